"""The worker moves a whole batch of claimed incidents in one transaction: within a batch
the guards must decide as they would one incident at a time. On both stores."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import select, update

from receiver.db.schema import action_budget, incidents
from tests import scripted_action
from tests.conftest import lifecycle_playbook

pytestmark = pytest.mark.usefixtures("scripted")


def alerts(make_alert: Any, containers: list[str]) -> Any:
    """One webhook, one alert per entry (a container may repeat: several incidents on it)."""
    return make_alert(
        alerts=[
            {
                "fingerprint": f"fp{i}",
                "labels": {"alertname": "ContainerOOMKilled", "container": c},
            }
            for i, c in enumerate(containers)
        ]
    )


def scripted_playbook(sleep: float = 0, **fields: Any) -> str:
    params = f"{{container: '${{labels.container}}', sleep: {sleep}}}"
    return lifecycle_playbook("scripted", params, verify_seconds=60, **fields)


async def logs_by_reason(svc: Any) -> dict[str | None, int]:
    counts: dict[str | None, int] = {}
    for item in await svc.incidents(limit=100):
        for h in (await svc.incident(item["id"]))["heal_logs"]:
            counts[h["reason"]] = counts.get(h["reason"], 0) + 1
    return counts


async def test_one_batch_acts_once_per_target(
    make_service: Any, playbooks_dir: Any, make_alert: Any
) -> None:
    svc = await make_service(playbooks=playbooks_dir(scripted_playbook()), worker_concurrency=16)
    await svc.post("/api/v1/alerts", alerts(make_alert, ["same"] * 5 + ["other"]))
    assert await svc.worker.poll_once() == 6  # one batch, one transaction
    await svc.worker.drain(within=10)  # the deferred four are not due for 2 s
    assert sorted(c for _, c in scripted_action.RUNS) == ["other", "same"]
    assert await logs_by_reason(svc) == {None: 2, "target_busy": 4}
    statuses = [i["status"] for i in await svc.incidents(limit=100)]
    assert sorted(statuses) == ["open"] * 4 + ["verifying"] * 2
    assert svc.sample("autoheal_guard_refusals_total", {"guard": "target_busy"}) == 4


async def test_a_unit_freed_in_the_batch_goes_to_the_next_incident(
    make_service: Any, playbooks_dir: Any, make_alert: Any
) -> None:
    """Budget 2 for a, b, c in one batch: a and b take the units; b waits on a's target,
    so its unit goes to c, which the budget had refused. Nothing is escalated."""
    svc = await make_service(
        playbooks=playbooks_dir(scripted_playbook()),
        worker_concurrency=16,
        action_budget=2,
        action_budget_window_seconds=3600,
    )
    await svc.post("/api/v1/alerts", alerts(make_alert, ["same", "same", "other"]))
    assert await svc.worker.poll_once() == 3
    await svc.worker.drain(within=10)
    assert sorted(c for _, c in scripted_action.RUNS) == ["other", "same"]
    assert await logs_by_reason(svc) == {None: 2, "target_busy": 1}
    assert await svc.incidents(status="escalated") == []
    async with svc.db.reading() as conn:
        assert (await conn.execute(select(action_budget.c.used))).scalar_one() == 2
    # b looks again when the target frees: the window's budget is spent by then.
    await asyncio.sleep(2.1)
    await svc.settle()
    (escalated,) = await svc.incidents(status="escalated")
    assert escalated["escalation_reason"] == "budget"
    assert len(scripted_action.RUNS) == 2


async def test_a_cooldown_taken_in_the_batch_holds_the_rest(
    make_service: Any, playbooks_dir: Any, make_alert: Any
) -> None:
    """An action on nothing takes no target lock, but its cooldown is still one per
    (playbook, target): the first of three in a batch runs, the others wait it out."""
    playbook = lifecycle_playbook(
        "alert_only", "{message: 'look at it'}", cooldown_minutes=30, verify_seconds=60
    )
    svc = await make_service(playbooks=playbooks_dir(playbook), worker_concurrency=16)
    await svc.post("/api/v1/alerts", alerts(make_alert, ["a", "b", "c"]))
    assert await svc.worker.poll_once() == 3
    await svc.worker.drain(within=10)
    assert await logs_by_reason(svc) == {None: 1, "cooldown": 2}
    (handed_over,) = await svc.incidents(status="escalated")
    assert handed_over["escalation_reason"] == "alert_only"


async def test_alert_only_incidents_are_not_serialised_on_a_lock(
    make_service: Any, playbooks_dir: Any, make_alert: Any
) -> None:
    playbook = lifecycle_playbook("alert_only", "{message: 'look at it'}", verify_seconds=60)
    svc = await make_service(playbooks=playbooks_dir(playbook), worker_concurrency=16)
    await svc.post("/api/v1/alerts", alerts(make_alert, [f"c{i}" for i in range(8)]))
    await svc.settle()
    escalated = await svc.get_json("/api/v1/incidents", status="escalated", limit=1)
    assert escalated["total"] == 8  # all in one pass: none deferred as target_busy
    assert await logs_by_reason(svc) == {None: 8}


async def test_an_outcome_is_not_applied_once_another_replica_holds_the_lease(
    make_service: Any, playbooks_dir: Any, make_alert: Any
) -> None:
    """A replica that stalled past its lease must not move an incident another replica
    took over: its late outcome finishes its own heal log and nothing else."""
    svc = await make_service(playbooks=playbooks_dir(scripted_playbook(sleep=0.5)))
    await svc.post("/api/v1/alerts", alerts(make_alert, ["box"]))
    assert await svc.worker.poll_once() == 1
    await asyncio.sleep(0.1)  # the action is running
    async with svc.db.transaction() as conn:
        await conn.execute(update(incidents).values(lease_owner="another-replica"))
    await svc.worker.drain(within=10)
    async with svc.db.reading() as conn:
        status, owner = (
            await conn.execute(select(incidents.c.status, incidents.c.lease_owner))
        ).one()
    assert (status, owner) == ("healing", "another-replica")
    (log,) = (await svc.only_incident())["heal_logs"]
    assert log["result"] == "success"
