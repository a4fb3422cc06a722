"""Stage 8, brake 5: quarantine, the restart-loop latch. Actions on one target are counted
across incidents and replicas; the one that would exceed the playbook's limit within its
window quarantines the target instead (escalated `quarantined`, one notice); later incidents
on it, on either replica, escalate without another notice until a person lifts it (API or
CLI), after which the count starts again. On SQLite and PostgreSQL, two replicas."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from receiver.db.schema import outbox
from tests.conftest import TOKEN, oom_alert, restart_playbook

pytestmark = pytest.mark.usefixtures("scripted")


def restart(**fields: Any) -> str:
    return restart_playbook(quarantine_after=2, **fields)


async def _escalation_notices(svc: Any) -> list[int]:
    async with svc.db.reading() as conn:
        rows = await conn.execute(select(outbox.c.incident_id).where(outbox.c.event == "escalated"))
        return [r[0] for r in rows.all()]


async def test_a_restart_loop_quarantines_its_target_on_every_replica(
    make_service: Any, playbooks_dir: Any, make_alert: Any, scripted: list[Any]
) -> None:
    # Repairs stay under verification for the whole test: a verify window that ran out on a
    # slow machine (the tests' default is 0.2 s) retried a repair and spent the count.
    folder = playbooks_dir(restart(verify_seconds=600))
    notify = {"notify_webhook_url": "http://127.0.0.1:9/hook"}  # queued, never sent here
    one = await make_service(playbooks=folder, replica_id="one", **notify)
    two = await make_service(playbooks=folder, replica_id="two", **notify)

    async def fault(svc: Any, fp: str, container: str = "db1") -> None:
        await svc.post("/api/v1/alerts", oom_alert(make_alert, fp=fp, container=container))
        await one.settle()
        await two.settle()

    await fault(one, "a")
    await fault(two, "b")
    assert [c for _, c in scripted] == ["db1", "db1"]  # two actions: the limit
    await fault(one, "c")  # a third would exceed it
    await fault(two, "d")  # and the target is now quarantined for every replica
    await fault(two, "e", container="web")  # another target is not touched by it
    assert [c for _, c in scripted] == ["db1", "db1", "web"]

    by_fp = {i["fingerprint"]: i for i in await one.incidents()}
    tripped, later = by_fp["c"], by_fp["d"]
    for incident in (tripped, later):
        assert (incident["status"], incident["escalation_reason"]) == (
            "escalated",
            "quarantined",
        )
    (log,) = (await one.incident(tripped["id"]))["heal_logs"]
    assert (log["result"], log["reason"]) == ("skipped", "quarantined")
    assert "quarantined container:db1: 2 actions on it in the last 60 min" in log["result_output"]
    (log,) = (await two.incident(later["id"]))["heal_logs"]
    assert "container:db1 is quarantined" in log["result_output"]
    # One notice: the incident that tripped it; the later one is counted, not announced.
    assert await _escalation_notices(one) == [tripped["id"]]
    refusals = one.sample("autoheal_guard_refusals_total", {"guard": "quarantine"})
    refusals += two.sample("autoheal_guard_refusals_total", {"guard": "quarantine"})
    assert refusals == 2

    listed = await two.get_json("/api/v1/quarantine")
    assert [t["target"] for t in listed["targets"]] == ["container:db1"]
    assert listed["targets"][0]["incident_id"] == tripped["id"]
    scrape = await (await one.client.get("/metrics")).text()
    assert "autoheal_quarantined_targets 1.0" in scrape

    # Lifting needs credentials, names who, and starts the count again.
    path = "/api/v1/quarantine/container:db1"
    assert (await one.client.delete(path)).status == 401
    lifted = await one.client.delete(
        path, json={"by": "ana"}, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert lifted.status == 200, await lifted.text()
    assert (await lifted.json())["lifted_by"] == "ana (api)"
    again = await one.client.delete(path, headers={"Authorization": f"Bearer {TOKEN}"})
    assert again.status == 404
    assert (await two.get_json("/api/v1/quarantine"))["targets"] == []

    await fault(two, "f")
    await fault(one, "g")
    assert [c for _, c in scripted][-2:] == ["db1", "db1"]  # two more after the lift
    await fault(one, "h")  # and the latch trips again
    assert {i["fingerprint"]: i for i in await one.incidents()}["h"]["escalation_reason"] == (
        "quarantined"
    )


async def test_a_limit_of_zero_never_quarantines(
    make_service: Any, playbooks_dir: Any, make_alert: Any, scripted: list[Any]
) -> None:
    svc = await make_service(
        playbooks=playbooks_dir(restart().replace("quarantine_after: 2", "quarantine_after: 0"))
    )
    for fp in "abcd":
        await svc.post("/api/v1/alerts", oom_alert(make_alert, fp=fp, container="db1"))
        await svc.settle()
    assert len(scripted) == 4
    assert (await svc.get_json("/api/v1/quarantine"))["targets"] == []


async def test_the_window_counts_only_recent_actions(
    make_service: Any, playbooks_dir: Any, make_alert: Any, scripted: list[Any]
) -> None:
    # 0.01 minutes: the first action has left the window by the time the third comes.
    folder = playbooks_dir(restart(quarantine_window_minutes=0.01))
    svc = await make_service(playbooks=folder)
    for fp in "ab":
        await svc.post("/api/v1/alerts", oom_alert(make_alert, fp=fp, container="db1"))
        await svc.settle()
    import asyncio

    await asyncio.sleep(0.7)
    await svc.post("/api/v1/alerts", oom_alert(make_alert, fp="c", container="db1"))
    await svc.settle()
    assert len(scripted) == 3
