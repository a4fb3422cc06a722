"""Human approval: a playbook with ``approval: required`` waits for a person, by API or by a
Telegram button (pressed in the allowed chat by an approver), and escalates when nobody
decides in time. Who decided is in the heal log."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.conftest import oom_alert, playbook_yaml
from tests.telegram_standin import TelegramStandIn

pytestmark = pytest.mark.usefixtures("scripted")

BOT = "42:approval-bot-token"
CHAT = "-1001"
APPROVER = 777
SECRET = "hook-secret-xyz"


def risky(timeout_minutes: float = 30) -> str:
    return playbook_yaml(
        "scripted",
        "{container: '${labels.container}'}",
        name="risky restart",
        approval="required",
        approval_timeout_minutes=timeout_minutes,
        verify_seconds=60,
        cooldown_minutes=0,
    )


@pytest.fixture
async def telegram() -> AsyncIterator[TelegramStandIn]:
    standin = TelegramStandIn(BOT)
    await standin.start()
    yield standin
    await standin.stop()


async def service(
    make_service: Any, playbooks_dir: Any, telegram: TelegramStandIn, **kw: Any
) -> Any:
    return await make_service(
        playbooks=playbooks_dir(risky(**kw)),
        telegram_token=BOT,
        telegram_chat_id=CHAT,
        telegram_base_url=telegram.base_url,
        telegram_webhook_secret=SECRET,
        telegram_approvers=f"{APPROVER},888",
    )


def press(data: str, *, user: int = APPROVER, chat: int = int(CHAT)) -> dict[str, Any]:
    """A Bot API update for a button press, as Telegram posts it to the webhook."""
    return {
        "update_id": 1000,
        "callback_query": {
            "id": "cbq-1",
            "from": {"id": user, "is_bot": False, "first_name": "Ann", "username": "ann"},
            "message": {"message_id": 5, "chat": {"id": chat, "type": "supergroup"}},
            "chat_instance": "x",
            "data": data,
        },
    }


async def waiting(svc: Any, make_alert: Any, scripted: Any) -> dict[str, Any]:
    await svc.post("/api/v1/alerts", oom_alert(make_alert, container="db1"))
    await svc.settle()
    incident = await svc.only_incident()
    assert incident["status"] == "awaiting_approval"
    assert incident["approval_state"] == "pending" and incident["approval_attempt"] == 1
    assert [(h["result"], h["reason"]) for h in incident["heal_logs"]] == [
        ("skipped", "awaiting_approval")
    ]
    assert scripted == []  # nothing ran
    return incident


async def test_approve_by_api_then_it_runs(
    make_service: Any, playbooks_dir: Any, make_alert: Any, telegram: TelegramStandIn, scripted: Any
) -> None:
    svc = await service(make_service, playbooks_dir, telegram)
    incident = await waiting(svc, make_alert, scripted)
    # People are asked, with buttons for this very attempt.
    await svc.deliver()
    (ask,) = telegram.delivered
    assert "Approval needed: ContainerOOMKilled" in ask["text"]
    assert "Wants to run: scripted ok on db1" in ask["text"]
    buttons = ask["reply_markup"]["inline_keyboard"][0]
    assert [b["callback_data"] for b in buttons] == [
        f"approve:{incident['id']}:1",
        f"deny:{incident['id']}:1",
    ]
    await svc.settle()  # before a decision nothing happens
    assert scripted == []

    resp = await svc.post(f"/api/v1/incidents/{incident['id']}/approve", {"by": "alice"})
    assert resp.status == 200, await resp.text()
    await svc.settle()
    after = await svc.incident(incident["id"])
    assert after["status"] == "verifying"
    assert scripted == [(incident["id"], "db1")]
    assert [(h["result"], h["result_output"]) for h in after["heal_logs"]][1] == (
        "approved",
        "approved by alice (api)",
    )
    assert after["heal_logs"][2]["result"] == "success"
    # Decided already: a second decision is refused.
    again = await svc.post(f"/api/v1/incidents/{incident['id']}/deny", {"by": "bob"})
    assert again.status == 409
    assert (await again.json())["error"] == "not_awaiting_approval"


async def test_deny_by_api_escalates(
    make_service: Any, playbooks_dir: Any, make_alert: Any, telegram: TelegramStandIn, scripted: Any
) -> None:
    svc = await service(make_service, playbooks_dir, telegram)
    incident = await waiting(svc, make_alert, scripted)
    resp = await svc.post(f"/api/v1/incidents/{incident['id']}/deny", b"", headers={})
    assert resp.status == 200
    after = await svc.incident(incident["id"])
    assert (after["status"], after["escalation_reason"]) == ("escalated", "denied")
    assert after["heal_logs"][-1]["result_output"] == "denied by api (api)"
    await svc.settle()
    assert scripted == []


async def test_no_decision_in_time_escalates(
    make_service: Any, playbooks_dir: Any, make_alert: Any, telegram: TelegramStandIn, scripted: Any
) -> None:
    svc = await service(make_service, playbooks_dir, telegram, timeout_minutes=0.003)  # 0.18 s
    incident = await waiting(svc, make_alert, scripted)
    await asyncio.sleep(0.25)
    await svc.settle()
    after = await svc.incident(incident["id"])
    assert (after["status"], after["escalation_reason"]) == ("escalated", "approval_timeout")
    assert after["heal_logs"][-1]["reason"] == "approval_timeout"
    assert scripted == []
    assert svc.sample("autoheal_escalations_total", {"reason": "approval_timeout"}) == 1


async def test_telegram_button_from_an_approver_approves(
    make_service: Any, playbooks_dir: Any, make_alert: Any, telegram: TelegramStandIn, scripted: Any
) -> None:
    svc = await service(make_service, playbooks_dir, telegram)
    incident = await waiting(svc, make_alert, scripted)
    hook = "/api/v1/telegram/updates"
    secret = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
    # Wrong or missing secret: not Telegram.
    bad = await svc.post(
        hook,
        press(f"approve:{incident['id']}:1"),
        token=None,
        headers={"X-Telegram-Bot-Api-Secret-Token": "nope"},
    )
    assert bad.status == 401
    # The right secret, but pressed in another chat, then by someone who is not an approver.
    other_chat = await svc.post(
        hook, press(f"approve:{incident['id']}:1", chat=-999), token=None, headers=dict(secret)
    )
    assert other_chat.status == 200
    stranger = await svc.post(
        hook, press(f"approve:{incident['id']}:1", user=123), token=None, headers=dict(secret)
    )
    assert stranger.status == 200
    stale = await svc.post(
        hook, press(f"approve:{incident['id']}:7"), token=None, headers=dict(secret)
    )
    assert stale.status == 200
    assert (await svc.incident(incident["id"]))["approval_state"] == "pending"
    assert telegram.answers == [
        "not allowed from this chat",
        "you are not an approver",
        f"incident {incident['id']} is no longer waiting for this decision",
    ]
    ok = await svc.post(
        hook, press(f"approve:{incident['id']}:1"), token=None, headers=dict(secret)
    )
    assert ok.status == 200
    assert telegram.answers[-1] == f"incident {incident['id']}: approved"
    await svc.settle()
    after = await svc.incident(incident["id"])
    assert after["status"] == "verifying"
    assert after["approval_by"] == f"ann (telegram {APPROVER})"
    assert any(
        h["result_output"] == f"approved by ann (telegram {APPROVER})" for h in after["heal_logs"]
    )
    assert scripted == [(incident["id"], "db1")]


async def test_telegram_updates_endpoint_is_off_without_a_secret(make_service: Any) -> None:
    svc = await make_service()
    resp = await svc.post("/api/v1/telegram/updates", press("approve:1:1"), token=None)
    assert resp.status == 404
