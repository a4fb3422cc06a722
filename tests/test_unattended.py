"""Stage 6 regressions: requests that must fail alone and clearly, never retried forever.

Each test here failed on the code before its fix (issue 16 names the item in each docstring).
"""

from __future__ import annotations

import asyncio
import copy
import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import func, select

from receiver import appkeys
from receiver.db.schema import signals as signals_table
from receiver.domain import ErrorType, Severity, Signal, Source
from receiver.errors import StoreUnavailable, Unstorable
from tests.conftest import load_fixture
from tests.scripted_action import WITH_SCRIPTED

FAR_FUTURE = "9999-12-31T23:59:59-01:00"


@pytest.fixture
async def people(aiohttp_server: Any) -> Any:
    """A JSON webhook channel's receiving end: what people were told, body by body."""
    from aiohttp import web

    received: list[Any] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    server = await aiohttp_server(app)
    server.received = received
    server.hook_url = str(server.make_url("/hook"))
    return server


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/v1/alerts", "startsAt", "alerts.0.startsAt"),
        ("/api/v1/alerts", "endsAt", "alerts.0.endsAt"),
        ("/api/v1/exceptions", "occurred_at", "occurred_at"),
    ],
)
@pytest.mark.parametrize(
    "moment", [FAR_FUTURE, "0002-01-01T00:00:00+01:00", "1800-01-01T00:00:00Z"]
)
async def test_dates_outside_a_sane_range_are_422_naming_the_field(
    make_service: Any, path: str, body: str, field: str, moment: str
) -> None:
    """Item 1: a far-future date overflowed in the store: 503 for ever. Now 422, the field named."""
    svc = await make_service()
    if path == "/api/v1/alerts":
        payload = load_fixture("firing.json")
        payload["alerts"][0][body] = moment
    else:
        payload = {"task": "t", "message": "m", body: moment}
    resp = await svc.post(path, payload)
    assert resp.status == 422, await resp.text()
    problem = await resp.json()
    assert problem["errors"][0]["field"] == field
    assert "between 1970-01-01 and 2200-01-01" in problem["detail"]
    assert await svc.incidents() == []


def _signal(n: int, starts_at: datetime | None = None) -> Signal:
    return Signal(
        source=Source.SCHEDULER,
        idempotency_key=f"ex:{n}",
        incident_key=f"ex:task{n}:UNKNOWN:sig",
        firing=True,
        task_name=f"task{n}",
        error_type=ErrorType.UNKNOWN,
        severity=Severity.P2,
        message="m",
        labels={},
        occurred_at=starts_at,
    )


async def test_a_request_that_cannot_be_stored_fails_alone(make_service: Any) -> None:
    """Item 2: 5 poison requests among 40 valid ones made valid ones 503. Each fails alone now:
    the valid ones are stored, the poison ones are refused as unstorable (no retry helps)."""
    svc = await make_service()
    ingestor = svc.app[appkeys.INGESTOR]
    # Past validation (a bug elsewhere could let one through): a time that overflows in UTC.
    poison = datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-1)))
    requests = [[_signal(n, poison if n % 9 == 4 else None)] for n in range(45)]
    results = await asyncio.gather(*(ingestor.submit(r) for r in requests), return_exceptions=True)
    bad = [n for n, r in enumerate(results) if isinstance(r, BaseException)]
    assert bad == [4, 13, 22, 31, 40]
    for n in bad:
        assert isinstance(results[n], Unstorable) and not isinstance(results[n], StoreUnavailable)
    assert len(await svc.incidents(limit=100)) == 40


async def test_unstorable_request_is_answered_4xx(make_service: Any, monkeypatch: Any) -> None:
    """Item 2, over HTTP: whatever the store cannot take for reasons of the request itself is a
    4xx (Alertmanager stops resending it), never a 503."""
    svc = await make_service()
    ingestor = svc.app[appkeys.INGESTOR]

    async def refuse(signals: Any) -> Any:
        raise Unstorable("OverflowError")

    monkeypatch.setattr(ingestor, "submit", refuse)
    resp = await svc.post("/api/v1/exceptions", {"task": "t", "message": "m"})
    assert resp.status == 422
    assert (await resp.json())["error"] == "unstorable"


async def test_escaped_backslash_u0000_text_is_accepted(make_service: Any) -> None:
    """Item 7: the six characters \\u0000 (a Windows path, not a NUL) were refused 400."""
    svc = await make_service()
    body = json.dumps({"task": "t", "message": "C:\\u0000\\data not found"})
    assert "\\\\u0000" in body
    resp = await svc.post("/api/v1/exceptions", body, headers={"Content-Type": "application/json"})
    assert resp.status == 202, await resp.text()
    (incident,) = await svc.incidents()
    assert incident["error_message"] == "C:\\u0000\\data not found"
    # A real NUL is still refused (PostgreSQL text cannot hold it), with one escape before it too.
    for raw in (
        b'{"task": "t", "message": "a\\u0000"}',
        b'{"task": "t", "message": "a\\\\\\u0000"}',
    ):
        resp = await svc.post(
            "/api/v1/exceptions", raw, headers={"Content-Type": "application/json"}
        )
        assert resp.status == 400, raw
    async with svc.db.reading() as conn:
        assert await conn.scalar(select(func.count()).select_from(signals_table)) == 1


async def test_huge_telegram_incident_id_is_refused_not_503(make_service: Any) -> None:
    """Item 7: approve:9999999999:1 overflowed PostgreSQL's integer: 503, resent for ever."""
    svc = await make_service(
        telegram_token="123:abc",
        telegram_chat_id="42",
        telegram_webhook_secret="s3cret",
        telegram_approvers="7",
        telegram_base_url="http://127.0.0.1:9",
    )
    update = {
        "update_id": 1,
        "callback_query": {
            "id": "q1",
            "from": {"id": 7, "username": "op"},
            "message": {"chat": {"id": 42}},
            "data": "approve:9999999999:1",
        },
    }
    resp = await svc.post(
        "/api/v1/telegram/updates",
        copy.deepcopy(update),
        token=None,
        headers={"X-Telegram-Bot-Api-Secret-Token": "s3cret"},
    )
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["answer"] == "unknown button"


async def test_group_fields_are_stored_once_per_webhook(make_service: Any, make_alert: Any) -> None:
    """Item 3: group-level fields, unknown ones included, were copied into every alert's stored
    payload: 1,000 alerts and a 700 KB unknown field stored 669 MB. Now stored bytes stay
    within a small constant of the bytes received."""
    svc = await make_service()
    payload = make_alert(
        alerts=[{"fingerprint": f"f{i:04}", "labels": {"n": str(i)}} for i in range(1000)]
    )
    payload["somethingHuge"] = "x" * 700_000
    body = json.dumps(payload)
    assert len(body) < 1_048_576
    resp = await svc.post("/api/v1/alerts", body, headers={"Content-Type": "application/json"})
    assert resp.status == 200, await resp.text()
    async with svc.db.reading() as conn:
        payloads = (await conn.execute(select(signals_table.c.payload))).scalars().all()
    assert len(payloads) == 1000
    stored = sum(len(json.dumps(p)) for p in payloads)
    assert stored < 2 * len(body), (stored, len(body))
    # The group is there once, and every other alert names where.
    holders = [p for p in payloads if "somethingHuge" in p["group"]]
    assert len(holders) == 1
    refs = {json.dumps(p["group"]) for p in payloads if p is not holders[0]}
    assert len(refs) == 1 and json.loads(refs.pop())["in"].startswith("am:f0000:")


async def test_a_fault_back_within_the_cooldown_is_escalated_and_told(
    make_service: Any,
    playbooks_dir: Any,
    make_alert: Any,
    scripted: Any,
    people: Any,
) -> None:
    """Item 9: a database container healed, down again minutes later: the new incident sat
    `open` with skipped/cooldown until the cooldown ended (30 min), nobody told."""
    from tests.conftest import oom_alert, playbook_yaml

    folder = playbooks_dir(
        playbook_yaml(
            "scripted", "{container: '${labels.container}'}", cooldown_minutes=30, max_retries=3
        )
    )
    svc = await make_service(playbooks=folder, notify_webhook_url=people.hook_url)
    first = oom_alert(make_alert, fp="db", container="momo-db")
    await svc.post("/api/v1/alerts", first)
    await svc.settle()
    resolved = copy.deepcopy(first)
    resolved["status"] = resolved["alerts"][0]["status"] = "resolved"
    assert (await svc.post("/api/v1/alerts", resolved)).status == 200
    # Down again: Alertmanager sends the same fingerprint with a new startsAt.
    again = copy.deepcopy(first)
    again["alerts"][0]["startsAt"] = "2026-11-28T03:40:00.000Z"
    await svc.post("/api/v1/alerts", again)
    await svc.settle()
    by_start = sorted(await svc.incidents(), key=lambda i: i["id"])
    assert [i["status"] for i in by_start] == ["resolved", "escalated"]
    back = await svc.incident(by_start[1]["id"])
    assert back["escalation_reason"] == "recurred"
    assert [(h["result"], h["reason"]) for h in back["heal_logs"]] == [("skipped", "cooldown")]
    assert len(scripted) == 1  # not repeated: a restart loop is what the cooldown prevents
    await svc.deliver()
    told = [
        n for body in people.received for n in body["notices"] if n["incident_id"] == back["id"]
    ]
    assert told and told[0]["reason"] == "recurred"
    assert "did not hold" in told[0]["why"]


async def test_an_oom_report_without_a_severity_is_p1_and_finds_its_playbook(
    make_service: Any,
) -> None:
    """Item 10: stored P2, the OOM playbooks (P1) never matched: escalated no_playbook."""
    svc = await make_service()  # the bundled playbooks and classifier rules
    report = {
        "task": "nightly_report",
        "message": "Worker exited prematurely: signal 9 (SIGKILL).",
        "labels": {"container": "momo-scheduler"},
    }
    resp = await svc.post("/api/v1/exceptions", report)
    assert resp.status == 202
    assert (await resp.json())["error_type"] == "OOM"
    (incident,) = await svc.incidents()
    assert incident["severity"] == "P1"
    assert incident["status"] == "open", incident["escalation_reason"]
    # A severity the sender gives still wins.
    report = {"task": "other", "message": "MemoryError", "severity": "warning"}
    await svc.post("/api/v1/exceptions", report)
    assert {i["task_name"]: i["severity"] for i in await svc.incidents()}["other"] == "P2"


async def test_no_playbook_says_what_would_have_matched(
    make_service: Any, make_alert: Any, people: Any
) -> None:
    """Item 11: a no_playbook escalation says what would have made a playbook match: no
    error_type label and no alertname mapping, or the nearest playbook and what excluded it."""
    svc = await make_service(notify_webhook_url=people.hook_url)
    unknown = make_alert(alerts=[{"fingerprint": "u", "labels": {"alertname": "WeirdThing"}}])
    await svc.post("/api/v1/alerts", unknown)
    # An OOM report for a container no OOM playbook names.
    report = {"task": "t", "message": "MemoryError", "labels": {"container": "momo-other"}}
    await svc.post("/api/v1/exceptions", report)
    details = {
        i["task_name"]: (await svc.incident(i["id"]))["escalation_detail"]
        for i in await svc.incidents()
    }
    assert "error_type label" in details["WeirdThing"]
    assert "'WeirdThing' is not mapped" in details["WeirdThing"]
    assert details["t"].startswith("Classified OOM by its text")
    assert 'needs container="momo-' in details["t"] and "'momo-other'" in details["t"]
    await svc.deliver()
    notes = [n["note"] for body in people.received for n in body["notices"]]
    assert any("error_type label" in (n or "") for n in notes), people.received


async def test_alert_only_says_its_instruction_once(make_service: Any, make_exception: Any) -> None:
    """Item 11: the alert_only message printed its instruction twice."""
    from tests.telegram_standin import TelegramStandIn

    telegram = TelegramStandIn("1:abc-bot-token")
    await telegram.start()
    svc = await make_service(
        telegram_token="1:abc-bot-token", telegram_chat_id="42", telegram_base_url=telegram.base_url
    )
    drive = (
        "google.auth.exceptions.RefreshError: ('invalid_grant: Token has been expired or revoked.')"
    )
    await svc.post("/api/v1/exceptions", make_exception(task="drive_sync", message=drive))
    await svc.settle()
    await svc.deliver()
    await svc.close_sender()
    await telegram.stop()
    (message,) = telegram.delivered
    instruction = message["text"].split("<i>", 1)[1].split("</i>", 1)[0][:40]
    assert message["text"].count(instruction) == 1, message["text"]


async def test_every_transition_is_one_structured_line(
    make_service: Any, playbooks_dir: Any, make_alert: Any, scripted: Any, caplog: Any
) -> None:
    """Item 12: nothing was logged at INFO when autoheal acted. Now each transition is one line
    with the incident id: opened, action started (target), action result, verified,
    resolved; escalated with its reason."""
    import logging

    from receiver.logs import RedactingFormatter, Redactor
    from tests.conftest import lifecycle_playbook, oom_alert

    caplog.set_level(logging.INFO, logger="autoheal.incident")
    folder = playbooks_dir(lifecycle_playbook("scripted", "{container: '${labels.container}'}"))
    svc = await make_service(playbooks=folder)
    firing = oom_alert(make_alert, fp="x", container="box1")
    await svc.post("/api/v1/alerts", firing)
    await svc.settle()
    resolved = copy.deepcopy(firing)
    resolved["status"] = resolved["alerts"][0]["status"] = "resolved"
    await svc.post("/api/v1/alerts", resolved)
    await svc.post("/api/v1/alerts", make_alert(alerts=[{"fingerprint": "nobody"}]))
    story = [r for r in caplog.records if r.name == "autoheal.incident"]
    (healed_id,) = {r.incident for r in story if r.event == "action_started"}
    assert [r.event for r in story if r.incident == healed_id] == [
        "opened",
        "action_started",
        "action_result",
        "verified",
        "resolved",
    ]
    started = next(r for r in story if r.event == "action_started")
    assert started.target == "container:box1" and started.levelname == "INFO"
    assert next(r for r in story if r.event == "action_result").result == "success"
    escalated = next(r for r in story if r.event == "escalated")
    assert escalated.reason == "no_playbook" and escalated.incident != healed_id
    line = RedactingFormatter("logfmt", Redactor()).format(started)
    assert f"incident={healed_id}" in line and "event=action_started" in line
    assert "target=container:box1" in line
    as_json = json.loads(RedactingFormatter("json", Redactor()).format(escalated))
    assert as_json["incident"] == escalated.incident and as_json["reason"] == "no_playbook"


@pytest.fixture
def small_disk(tmp_path: Any) -> Any:
    """A 4 MiB filesystem of its own (tmpfs; needs root, as CI has)."""
    import os
    import subprocess

    from tests.conftest import require

    mount = tmp_path / "disk"
    mount.mkdir()
    if (
        os.geteuid() != 0
        or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=False
        ).returncode
    ):
        require("root, to mount a small tmpfs")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


async def test_readyz_reports_a_store_that_refuses_writes(
    small_disk: Any, aiohttp_client: Any, make_alert: Any
) -> None:
    """Item 7: /readyz stayed 200 on SQLite while every write failed (disk full)."""
    from receiver.app import create_app
    from receiver.config import load_settings
    from tests.conftest import TOKEN

    settings = load_settings(
        None,
        database_url=f"sqlite+aiosqlite:///{small_disk}/autoheal.db",
        auth_token=TOKEN,
        docker_url=None,
        worker=False,
    )
    client = await aiohttp_client(create_app(settings, actions=WITH_SCRIPTED))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert (await client.get("/readyz")).status == 200
    filler = small_disk / "filler"
    # Every byte the filesystem has left. Unbuffered: a buffer holding what did not fit
    # would raise again when the file closes.
    with filler.open("wb", buffering=0) as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError:
            pass
    statuses = set()
    for n in range(20):  # enough new alerts to need new pages
        payload = make_alert(
            alerts=[{"fingerprint": f"full{n}-{i}", "labels": {"n": "x" * 2000}} for i in range(20)]
        )
        statuses.add((await client.post("/api/v1/alerts", json=payload, headers=auth)).status)
        if 503 in statuses:
            break
    assert 503 in statuses, statuses
    ready = await client.get("/readyz")
    assert ready.status == 503
    assert "refuses writes" in (await ready.json())["detail"]
    filler.unlink()  # space again: ready again, with no other traffic
    assert (await client.get("/readyz")).status == 200
