"""Stage 8, brake 6: blast radius. A playbook with max_concurrent_targets acts on at most
that many distinct unhealthy targets at once, counted from the store across replicas; an
incident on one more target is escalated blast_radius and nothing runs on it; a target
already counted may be acted on again; when one heals, room is made. On SQLite and
PostgreSQL, two replicas."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import oom_alert, restart_playbook

pytestmark = pytest.mark.usefixtures("scripted")


async def test_a_playbook_acts_on_at_most_its_blast_radius_across_replicas(
    make_service: Any, playbooks_dir: Any, make_alert: Any, scripted: list[Any]
) -> None:
    # verify_seconds 60: healed targets stay "unhealthy" (verifying) for the whole test.
    folder = playbooks_dir(restart_playbook(max_concurrent_targets=2, verify_seconds=60))
    one = await make_service(playbooks=folder, replica_id="one")
    two = await make_service(playbooks=folder, replica_id="two")

    async def fault(svc: Any, fp: str, container: str) -> None:
        await svc.post("/api/v1/alerts", oom_alert(make_alert, fp=fp, container=container))
        await one.settle()
        await two.settle()

    await fault(one, "a", "db1")
    await fault(two, "b", "db2")
    assert sorted(c for _, c in scripted) == ["db1", "db2"]
    await fault(two, "c", "db3")  # a third target of the same playbook: not acted on
    await fault(one, "d", "db4")
    await fault(one, "e", "db1")  # db1 is already counted: it may be acted on again
    assert sorted(c for _, c in scripted) == ["db1", "db1", "db2"]

    by_fp = {i["fingerprint"]: i for i in await one.incidents()}
    for fp in ("c", "d"):
        assert (by_fp[fp]["status"], by_fp[fp]["escalation_reason"]) == (
            "escalated",
            "blast_radius",
        )
    log = (await two.incident(by_fp["c"]["id"]))["heal_logs"][0]
    assert (log["result"], log["reason"]) == ("skipped", "blast_radius")
    assert "2 targets of playbook 'restart' are unhealthy already" in log["result_output"]
    assert "monitoring or a shared dependency may be broken" in log["result_output"]
    refusals = sum(
        svc.sample("autoheal_guard_refusals_total", {"guard": "blast_radius"}) for svc in (one, two)
    )
    assert refusals == 2

    # db2's alert resolves: its target is healthy again, which makes room for another.
    resolved = make_alert(
        status="resolved",
        alerts=[
            {"fingerprint": "b", "labels": {"alertname": "ContainerOOMKilled", "container": "db2"}}
        ],
    )
    await one.post("/api/v1/alerts", resolved)
    await fault(two, "f", "db5")
    assert sorted(c for _, c in scripted) == ["db1", "db1", "db2", "db5"]
