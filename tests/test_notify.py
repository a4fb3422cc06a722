"""Notifications: outbox rows written with the state change, delivered by the real Telegram
client (to a local stand-in of the Bot API) and the JSON webhook, with retries, storm
summaries, HTML escaping and a redacted token."""

from __future__ import annotations

import asyncio
import html.parser
import logging
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import select

from receiver.db.schema import outbox
from tests.conftest import BOT_TOKEN, lifecycle_playbook, oom_alert
from tests.telegram_standin import TelegramStandIn

CHAT = "-100200300"
DRIVE = "invalid_grant: Token has been expired or revoked."


def with_telegram(telegram: TelegramStandIn, **extra: Any) -> dict[str, Any]:
    return {
        "telegram_token": BOT_TOKEN,
        "telegram_chat_id": CHAT,
        "telegram_base_url": telegram.base_url,
        "external_url": "http://autoheal.example:9095",
        **extra,
    }


def leaked(caplog: Any) -> list[str]:
    """autoheal's log lines holding the token (the stand-in's own access log, which plays
    Telegram's side, is left out)."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name != "aiohttp.access" and BOT_TOKEN in r.getMessage()
    ]


def resolved_of(payload: dict[str, Any]) -> dict[str, Any]:
    for alert in payload["alerts"]:
        alert["status"] = "resolved"
    return payload


async def outbox_rows(svc: Any) -> list[dict[str, Any]]:
    async with svc.db.reading() as conn:
        rows = (await conn.execute(select(outbox).order_by(outbox.c.id))).all()
    return [dict(r._mapping) for r in rows]


class OnlyTelegramTags(html.parser.HTMLParser):
    """Telegram's HTML mode accepts a few tags; anything else in a message is a bug (and an
    unescaped value would show up here as a tag)."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        self.tags.append(tag)


def tags_of(text: str) -> set[str]:
    parser = OnlyTelegramTags()
    parser.feed(text)
    return set(parser.tags)


async def test_alert_only_escalation_sends_the_seed_message(
    make_service: Any, make_exception: Any, telegram: TelegramStandIn
) -> None:
    """The seed's Google Drive playbook (ALERT_ONLY): escalated, and Telegram gets its text."""
    svc = await make_service(**with_telegram(telegram))
    await svc.post("/api/v1/exceptions", make_exception(task="drive_sync", message=DRIVE))
    await svc.settle()
    incident = await svc.only_incident()
    assert incident["escalation_reason"] == "alert_only"
    rows = await outbox_rows(svc)
    assert [(r["channel"], r["event"], r["status"]) for r in rows] == [
        ("telegram", "escalated", "pending")
    ]
    assert await svc.deliver() == 1
    (sent,) = telegram.delivered
    assert sent["chat_id"] == CHAT and sent["parse_mode"] == "HTML"
    text = sent["text"]
    assert "Escalated: drive_sync (AUTH_FAIL, P2)" in text
    assert "Google Drive OAuth token expired or was revoked" in text  # the seed's message
    assert "Why: this fault needs a person" in text
    assert f'href="http://autoheal.example:9095/api/v1/incidents/{incident["id"]}"' in text
    assert tags_of(text) <= {"b", "i", "a"}
    assert (await outbox_rows(svc))[0]["status"] == "sent"
    assert await svc.deliver() == 0  # marked sent once: nothing goes out again
    assert len(telegram.delivered) == 1
    assert (
        svc.sample("autoheal_notifications_total", {"channel": "telegram", "result": "sent"}) == 1
    )


@pytest.mark.usefixtures("scripted")
async def test_resolved_after_a_heal_says_what_was_done(
    make_service: Any, playbooks_dir: Any, make_alert: Any, telegram: TelegramStandIn
) -> None:
    svc = await make_service(
        playbooks=playbooks_dir(lifecycle_playbook("scripted", "{}", verify_seconds=60)),
        **with_telegram(telegram),
    )
    alert = oom_alert(make_alert, container="box")
    alert["alerts"][0]["generatorURL"] = "http://prometheus.example:9090/graph?g0.expr=up"
    await svc.post("/api/v1/alerts", alert)
    await svc.settle()
    await svc.post("/api/v1/alerts", resolved_of(oom_alert(make_alert, container="box")))
    assert await svc.deliver() == 1
    (sent,) = telegram.delivered
    text = sent["text"]
    assert text.startswith("<b>Healed: ContainerOOMKilled (OOM, P1)</b>")
    assert "Done: scripted ok on box → success" in text
    assert "Playbook: fix it on container:box" in text
    assert "Healed in" in text
    assert '<a href="http://prometheus.example:9090/graph?g0.expr=up">alert source</a>' in text


async def test_429_retry_after_is_honoured_and_5xx_retried(
    make_service: Any, make_exception: Any, telegram: TelegramStandIn
) -> None:
    svc = await make_service(**with_telegram(telegram))
    telegram.fail_next(429, retry_after=1)
    telegram.fail_next(502)
    await svc.post("/api/v1/exceptions", make_exception(task="drive_sync", message=DRIVE))
    await svc.settle()
    assert await svc.deliver() == 1
    attempts = [r for r in telegram.requests if r.path.endswith("/sendMessage")]
    assert len(attempts) == 3 and len(telegram.delivered) == 1
    assert attempts[1].at - attempts[0].at >= 1.0  # waited as Telegram asked
    (row,) = await outbox_rows(svc)
    assert row["status"] == "sent"


async def test_outage_keeps_the_message_until_it_can_be_sent(
    make_service: Any, make_exception: Any, telegram: TelegramStandIn, caplog: Any
) -> None:
    """Still failing after the in-place retries: pending again, later; the token appears in
    no log line and no stored error."""
    from receiver.notify import sender as sender_module

    svc = await make_service(**with_telegram(telegram))
    telegram.fail_next(503, times=sender_module.INLINE_TRIES)
    await svc.post("/api/v1/exceptions", make_exception(task="drive_sync", message=DRIVE))
    await svc.settle()
    with caplog.at_level(logging.DEBUG):
        assert await svc.deliver() == 1
    (row,) = await outbox_rows(svc)
    assert (row["status"], row["attempts"]) == ("pending", 1)
    assert row["next_attempt_at"] > row["created_at"]
    assert "503" in row["last_error"] and BOT_TOKEN not in row["last_error"]
    assert not leaked(caplog)
    assert telegram.delivered == []
    assert await svc.deliver() == 0  # not due yet
    async with svc.db.transaction() as conn:  # time passes
        await conn.execute(outbox.update().values(next_attempt_at=row["created_at"]))
    assert await svc.deliver() == 1
    assert len(telegram.delivered) == 1
    assert (await outbox_rows(svc))[0]["status"] == "sent"


async def test_unreachable_telegram_does_not_leak_the_token(
    make_service: Any, make_exception: Any, caplog: Any
) -> None:
    from tests.realprograms import free_port

    svc = await make_service(
        telegram_token=BOT_TOKEN,
        telegram_chat_id=CHAT,
        telegram_base_url=f"http://127.0.0.1:{free_port()}",  # nobody listens
    )
    await svc.post("/api/v1/exceptions", make_exception(task="drive_sync", message=DRIVE))
    await svc.settle()
    with caplog.at_level(logging.DEBUG):
        await svc.deliver()
    (row,) = await outbox_rows(svc)
    assert row["status"] == "pending" and "unreachable" in row["last_error"]
    assert BOT_TOKEN not in row["last_error"]
    assert not leaked(caplog)


async def test_refused_for_good_is_marked_failed(
    make_service: Any, make_exception: Any, telegram: TelegramStandIn
) -> None:
    svc = await make_service(**with_telegram(telegram))
    telegram.fail_next(400)  # e.g. "chat not found": retrying cannot help
    await svc.post("/api/v1/exceptions", make_exception(task="drive_sync", message=DRIVE))
    await svc.settle()
    await svc.deliver()
    (row,) = await outbox_rows(svc)
    assert row["status"] == "failed" and "400" in row["last_error"]
    assert len(telegram.requests) == 1
    assert (
        svc.sample("autoheal_notifications_total", {"channel": "telegram", "result": "failed"}) == 1
    )


async def test_alert_storm_is_one_summary(
    make_service: Any, make_alert: Any, telegram: TelegramStandIn
) -> None:
    svc = await make_service(**with_telegram(telegram))
    storm = make_alert(alerts=[{"fingerprint": f"storm{i}"} for i in range(30)])
    await svc.post("/api/v1/alerts", storm)  # no playbook: escalated at once, in ingest
    assert len(await outbox_rows(svc)) == 30
    assert await svc.deliver() == 30
    (sent,) = telegram.delivered
    text = sent["text"]
    assert text.startswith("<b>30 notifications</b>: 30 escalated (30 no_playbook)")
    assert "… and 20 more" in text
    assert {r["status"] for r in await outbox_rows(svc)} == {"sent"}


async def test_hostile_values_are_escaped(
    make_service: Any, make_alert: Any, telegram: TelegramStandIn
) -> None:
    svc = await make_service(**with_telegram(telegram))
    hostile = '<a href="javascript:alert(1)">x</a> & <script>'
    payload = make_alert(
        alerts=[
            {
                "fingerprint": "evil",
                "labels": {"alertname": '<b>Evil</b>"&', "severity": "critical"},
                "annotations": {"summary": hostile},
                "generatorURL": 'javascript:alert("x")',
            }
        ]
    )
    await svc.post("/api/v1/alerts", payload)
    await svc.deliver()
    (sent,) = telegram.delivered
    text = sent["text"]
    assert tags_of(text) <= {"b", "i", "a"}
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert "&lt;b&gt;Evil&lt;/b&gt;&quot;&amp;" in text
    assert "javascript:" not in text.split("</b>", 1)[1].replace("javascript:alert(1)&quot;", "")
    assert 'href="javascript' not in text  # only http(s) links become links


async def test_json_webhook_channel(
    make_service: Any, make_exception: Any, aiohttp_server: Any
) -> None:
    received: list[Any] = []

    async def hook(request: web.Request) -> web.Response:
        received.append((request.headers.get("Authorization"), await request.json()))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    server = await aiohttp_server(app)
    svc = await make_service(
        notify_webhook_url=str(server.make_url("/hook")), notify_webhook_token="hook-secret"
    )
    await svc.post("/api/v1/exceptions", make_exception(task="drive_sync", message=DRIVE))
    await svc.settle()
    assert await svc.deliver() == 1
    ((auth, body),) = received
    assert auth == "Bearer hook-secret"
    assert body["event"] == "escalated"
    (notice,) = body["notices"]
    assert notice["task_name"] == "drive_sync" and notice["reason"] == "alert_only"
    assert "Google Drive" in notice["note"]


async def test_two_senders_share_the_work_and_send_each_message_once(
    make_service: Any, make_alert: Any, telegram: TelegramStandIn, make_settings: Any
) -> None:
    """Two senders (two replicas) flushing at once: the leases split the rows."""
    svc = await make_service(**with_telegram(telegram, notify_summary_after=1000))
    other = await make_service(**with_telegram(telegram, notify_summary_after=1000))
    await svc.post(
        "/api/v1/alerts", make_alert(alerts=[{"fingerprint": f"fp{i}"} for i in range(12)])
    )
    counts = await asyncio.gather(svc.deliver(), other.deliver())
    assert sum(counts) == 12
    assert len(telegram.delivered) == 12
    ids = sorted(m["text"].split("incident #")[1].split("<")[0] for m in telegram.delivered)
    assert len(set(ids)) == 12


def _serve(tmp_path: Any, port: int, telegram: TelegramStandIn, n: int) -> Any:
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT, TOKEN

    env = {
        **os.environ,
        "AUTOHEAL_LISTEN": f"127.0.0.1:{port}",
        "AUTOHEAL_AUTH_TOKEN": TOKEN,
        "AUTOHEAL_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/autoheal.db",
        "AUTOHEAL_DOCKER_URL": "",
        "AUTOHEAL_TELEGRAM_TOKEN": BOT_TOKEN,
        "AUTOHEAL_TELEGRAM_CHAT_ID": CHAT,
        "AUTOHEAL_TELEGRAM_BASE_URL": telegram.base_url,
        "AUTOHEAL_NOTIFY_BATCH_SECONDS": "0.2",
        "AUTOHEAL_WORKER_POLL_SECONDS": "0.1",
        "AUTOHEAL_LOG_LEVEL": "DEBUG",
        "AUTOHEAL_REPLICA_ID": "replica-a",  # the same replica, restarted
    }
    log = (tmp_path / f"serve{n}.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "receiver", "serve"], env=env, cwd=ROOT, stdout=log, stderr=log
    )
    log.close()
    return process


# One store is enough for the process test: the outbox is the same table on both.
@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
async def test_kill_9_between_commit_and_send_then_restart_sends_once(
    tmp_path: Any, telegram: TelegramStandIn, make_exception: Any, store_url: str
) -> None:
    """A real `autoheal serve` escalates (the outbox row commits with it) but cannot send
    (Telegram answers 503); kill -9; a new process delivers the message, exactly once."""
    import aiohttp

    from tests.conftest import TOKEN, until
    from tests.realprograms import free_port, listening

    port = free_port()
    telegram.fail_next(503, times=10_000)
    first = _serve(tmp_path, port, telegram, 1)
    second = None
    try:
        await until(lambda: asyncio.to_thread(listening, port), 30, "autoheal listening")
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            body = make_exception(task="drive_sync", message=DRIVE)
            async with http.post(f"http://127.0.0.1:{port}/api/v1/exceptions", json=body) as r:
                assert r.status == 202
            await until(
                lambda: asyncio.sleep(0, len(telegram.requests) >= 1), 30, "a delivery attempt"
            )
        first.kill()  # SIGKILL: no shutdown, no cleanup
        first.wait(10)
        assert telegram.delivered == []
        telegram.script.clear()  # Telegram is back
        second = _serve(tmp_path, port, telegram, 2)
        await until(lambda: asyncio.sleep(0, len(telegram.delivered) == 1), 60, "delivered")
        await asyncio.sleep(1.0)  # several more batches: nothing goes out again
        assert len(telegram.delivered) == 1
        assert "Google Drive OAuth token expired" in telegram.delivered[0]["text"]
        logs = "".join(p.read_text(errors="replace") for p in tmp_path.glob("serve*.log"))
        assert "escalated: alert_only" in logs
        assert BOT_TOKEN not in logs  # not even at DEBUG
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(10)


@pytest.mark.usefixtures("scripted")
async def test_healing_started_is_announced_when_asked(
    make_service: Any, playbooks_dir: Any, make_alert: Any, telegram: TelegramStandIn
) -> None:
    svc = await make_service(
        playbooks=playbooks_dir(lifecycle_playbook("scripted", "{}", verify_seconds=60)),
        **with_telegram(telegram, notify_healing=True),
    )
    await svc.post("/api/v1/alerts", oom_alert(make_alert, container="box"))
    await svc.settle()
    assert [(r["event"], r["status"]) for r in await outbox_rows(svc)] == [("healing", "pending")]
    await svc.deliver()
    (sent,) = telegram.delivered
    assert sent["text"].startswith("<b>Healing: ContainerOOMKilled (OOM, P1)</b>")
    assert "Playbook: fix it on container:box" in sent["text"]


def test_every_escalation_reason_has_words() -> None:
    """The reasons are named once (EscalationReason); each has its sentence for people, and a
    reason stored as a plain string finds the same one."""
    from receiver.domain import EscalationReason
    from receiver.notify.base import REASONS

    assert set(REASONS) == set(EscalationReason)
    assert REASONS["recurred"] == REASONS[EscalationReason.RECURRED]


def test_a_notice_about_autoheal_itself_reads_without_an_incident() -> None:
    from receiver.notify.base import Notice
    from receiver.notify.telegram import render, render_summary

    paused = Notice(
        event="paused",
        incident_id=0,
        task_name="autoheal",
        error_type="-",
        severity="-",
        status="paused",
        message="Paused by ana (api) until resumed: deploy <db>.",
        incident_url="",
    )
    text = render(paused)
    assert text.startswith(
        "<b>autoheal paused</b>\nPaused by ana (api) until resumed: deploy &lt;db&gt;."
    )
    assert "incident #" not in text and "(-, -)" not in text
    summary = render_summary([paused] * 6)
    assert "#0" not in summary and "autoheal paused: Paused by ana" in summary
