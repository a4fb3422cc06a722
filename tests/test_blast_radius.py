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


@pytest.mark.usefixtures("programs")
@pytest.mark.timeout(60)
async def test_a_fraction_of_a_fleet_that_prometheus_counts(
    tmp_path: Any, make_service: Any, playbooks_dir: Any, make_alert: Any, scripted: list[Any]
) -> None:
    """fleet_query asked of the real Prometheus: a fleet of 4 at max_fleet_fraction 0.5
    lets 2 targets be acted on at once. Prometheus unreachable: the fraction cannot be
    known, and only max_concurrent_targets (unset here) would hold."""
    import asyncio

    from tests.realprograms import free_port, start_prometheus, stop_process

    prometheus = await asyncio.to_thread(
        start_prometheus, tmp_path / "prometheus", {"global": {"scrape_interval": "1s"}}, {}
    )
    fleet = "fleet_query: 'vector(4)'  # a fleet of 4, as count(up{job=...}) would say"
    playbook = restart_playbook(verify_seconds=60, max_fleet_fraction=0.5)
    playbook += "    " + fleet + "\n"
    try:
        svc = await make_service(playbooks=playbooks_dir(playbook), prometheus_url=prometheus.url)
        for fp, container in (("a", "db1"), ("b", "db2"), ("c", "db3")):
            await svc.post("/api/v1/alerts", oom_alert(make_alert, fp=fp, container=container))
            await svc.settle()
        assert sorted(c for _, c in scripted) == ["db1", "db2"]
        by_fp = {i["fingerprint"]: i for i in await svc.incidents()}
        log = (await svc.incident(by_fp["c"]["id"]))["heal_logs"][0]
        assert log["reason"] == "blast_radius"
        assert "0.5 of a fleet of 4: 2" in log["result_output"]
    finally:
        await asyncio.to_thread(stop_process, prometheus.process)

    scripted.clear()
    nowhere = f"http://127.0.0.1:{free_port()}"
    blind = await make_service(playbooks=playbooks_dir(playbook), prometheus_url=nowhere)
    for fp, container in (("d", "web1"), ("e", "web2"), ("f", "web3")):
        await blind.post("/api/v1/alerts", oom_alert(make_alert, fp=fp, container=container))
        await blind.settle()
    assert sorted(c for _, c in scripted) == ["web1", "web2", "web3"]


def test_targets_started_in_an_earlier_round_count_in_the_next() -> None:
    """begin decides again the incidents that lost a guard row to another replica; the
    targets started meanwhile must count against the blast radius, also for a playbook
    that had none engaged before the batch."""
    from datetime import UTC, datetime

    from receiver.brakes import Brakes
    from receiver.worker.begin import _engaging
    from receiver.worker.decisions import Facts
    from tests.test_decide import plan

    limited = plan("db1", brakes=Brakes(max_concurrent_targets=2))
    free = plan("web", pid=2)
    facts = _engaging(Facts(datetime.now(UTC)), [limited, free])
    assert facts.engaged == {1: frozenset({"db1"})}
    facts = _engaging(facts, [plan("db2", brakes=Brakes(max_concurrent_targets=2))])
    assert facts.engaged == {1: frozenset({"db1", "db2"})}
