"""The global action budget: an alert storm starts at most the budget's actions per window,
across replicas; the rest are escalated ``budget`` and told in one summary."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.conftest import lifecycle_playbook
from tests.telegram_standin import TelegramStandIn

pytestmark = pytest.mark.usefixtures("scripted")

BUDGET = 5


def storm(make_alert: Any, n: int) -> Any:
    return make_alert(
        alerts=[
            {
                "fingerprint": f"s{i}",
                "labels": {"alertname": "ContainerOOMKilled", "container": f"c{i}"},
            }
            for i in range(n)
        ]
    )


def playbook() -> str:
    return lifecycle_playbook("scripted", "{container: '${labels.container}'}", verify_seconds=60)


@pytest.mark.timeout(120)
async def test_storm_of_500_runs_at_most_the_budget(
    make_service: Any, playbooks_dir: Any, make_alert: Any, scripted: Any
) -> None:
    telegram = TelegramStandIn("9:t")
    await telegram.start()
    try:
        svc = await make_service(
            playbooks=playbooks_dir(playbook()),
            action_budget=BUDGET,
            action_budget_window_seconds=3600,
            worker_concurrency=8,
            telegram_token="9:t",
            telegram_chat_id="1",
            telegram_base_url=telegram.base_url,
        )
        assert (await svc.post("/api/v1/alerts", storm(make_alert, 500))).status == 200
        await svc.settle(within=90)
        assert len(scripted) == BUDGET
        escalated = await svc.get_json("/api/v1/incidents", status="escalated", limit=1)
        assert escalated["total"] == 500 - BUDGET
        (one,) = escalated["items"]
        detail = await svc.incident(one["id"])
        assert detail["escalation_reason"] == "budget"
        assert [(h["result"], h["reason"]) for h in detail["heal_logs"]] == [("skipped", "budget")]
        assert svc.sample("autoheal_escalations_total", {"reason": "budget"}) == 500 - BUDGET
        assert svc.sample("autoheal_guard_refusals_total", {"guard": "budget"}) == 500 - BUDGET
        await svc.deliver()
        (summary,) = telegram.delivered  # one message for the whole storm
        assert f"{500 - BUDGET} escalated ({500 - BUDGET} budget)" in summary["text"]
    finally:
        await telegram.stop()


async def test_budget_holds_across_replicas(
    make_service: Any, playbooks_dir: Any, make_alert: Any, scripted: Any
) -> None:
    folder = playbooks_dir(playbook())
    replicas = [
        await make_service(
            playbooks=folder,
            action_budget=BUDGET,
            action_budget_window_seconds=3600,
            replica_id=f"r{i}",
        )
        for i in range(2)
    ]
    assert (await replicas[0].post("/api/v1/alerts", storm(make_alert, 40))).status == 200
    await asyncio.gather(*(r.settle(within=60) for r in replicas))
    assert len(scripted) == BUDGET
    escalated = await replicas[1].get_json("/api/v1/incidents", status="escalated", limit=1)
    assert escalated["total"] == 40 - BUDGET


async def test_a_unit_held_back_by_another_guard_is_given_back(
    make_service: Any, playbooks_dir: Any, make_alert: Any, scripted: Any
) -> None:
    """Two alerts for one container: the second waits on the target lock and must not have
    spent the budget's only unit."""
    svc = await make_service(
        playbooks=playbooks_dir(
            lifecycle_playbook(
                "scripted", "{container: '${labels.container}', sleep: 0.3}", verify_seconds=60
            )
        ),
        action_budget=2,
        action_budget_window_seconds=3600,
    )
    same = make_alert(
        alerts=[
            {
                "fingerprint": f"t{i}",
                "labels": {"alertname": "ContainerOOMKilled", "container": "one"},
            }
            for i in range(2)
        ]
    )
    await svc.post("/api/v1/alerts", same)
    await svc.settle(within=20)  # one runs; the other waits on the lock (unit given back)
    assert len(scripted) == 1
    await asyncio.sleep(2.1)  # the busy target's retry falls due
    await svc.settle(within=20)
    assert len(scripted) == 2  # both ran, within a budget of 2
    assert await svc.get_json("/api/v1/incidents", status="escalated") == {
        "items": [],
        "total": 0,
        "limit": 50,
        "offset": 0,
    }
