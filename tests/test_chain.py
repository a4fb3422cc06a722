"""The whole loop on the real programs: a target's metric turns bad, Prometheus fires a rule,
Alertmanager (the shipped routing, bearer token from a file) posts to autoheal, the bundled
seed playbook restarts the real container, the target is healthy again, Alertmanager sends
resolved, and the incident ends resolved with its time to heal.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.chain import TARGET, Chain, start_chain
from tests.conftest import TOKEN, Service, _pg, until

DB_PLAYBOOK = "DB connection refused"


async def chain_for(svc: Service, tmp_path: Path, podman: Any, **kw: Any) -> Chain:
    url = str(svc.client.make_url("")).rstrip("/")
    return await asyncio.to_thread(start_chain, tmp_path, podman, url, TOKEN, **kw)


async def status_of(svc: Service, status: str) -> dict[str, Any] | None:
    """The newest incident once it has ``status`` and no attempt is still running (a resolve
    may arrive while the action that caused it is being recorded)."""
    items = await svc.incidents()
    if items and items[0]["status"] == status:
        incident = await svc.incident(items[0]["id"])
        if all(h["result"] != "pending" for h in incident["heal_logs"]):
            return incident
    return None


async def metrics_text(svc: Service) -> str:
    resp = await svc.client.get("/metrics")
    return await resp.text()


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
@pytest.mark.usefixtures("programs")
@pytest.mark.timeout(150)
async def test_metric_turns_bad_restart_heals_alert_resolves(
    podman: Any, tmp_path: Path, make_service: Any
) -> None:
    svc = await make_service(worker=True, docker_url=podman.url, default_verify_seconds=30)
    chain = await chain_for(svc, tmp_path, podman)
    try:
        before = podman.started_at(TARGET)
        await asyncio.to_thread(chain.break_target)
        incident = await until(lambda: status_of(svc, "resolved"), 90, "incident resolved")
        # The restart really repaired the target, and Prometheus saw it.
        assert podman.started_at(TARGET) != before
        assert await asyncio.to_thread(chain.target_value) == "1"
        assert await asyncio.to_thread(chain.query, 'app_up{job="momo-db"} == 1')
        (heal,) = incident["heal_logs"]  # one heal, however often Alertmanager sent it
        assert (heal["result"], heal["action_type"]) == ("success", "docker_restart")
        assert incident["task_name"] == "PostgresDown"
        assert incident["error_type"] == "DB_UNREACHABLE"
        assert incident["healed"] is True
        assert 0 < incident["time_to_heal_seconds"] < 60
        labels = {"error_type": "DB_UNREACHABLE", "playbook": DB_PLAYBOOK}
        assert svc.sample("autoheal_time_to_heal_seconds_count", labels) == 1
        assert svc.sample("autoheal_verify_outcomes_total", {"outcome": "held"}) == 1
        pb = {p["name"]: p for p in (await svc.get_json("/api/v1/playbooks"))["items"]}
        assert pb[DB_PLAYBOOK]["success_count"] == 1
    finally:
        await asyncio.to_thread(chain.stop)


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
@pytest.mark.usefixtures("programs")
@pytest.mark.timeout(150)
async def test_restart_does_not_help_escalates_and_autoheals_rule_fires(
    podman: Any, tmp_path: Path, make_service: Any
) -> None:
    """A target broken at every start: each restart succeeds, none heals. After the seed
    playbook's three attempts the incident is escalated (not_healed), /metrics says so, and
    the shipped AutoHealEscalationsRising rule fires in the same Prometheus."""
    svc = await make_service(worker=True, docker_url=podman.url, default_verify_seconds=3)
    chain = await chain_for(svc, tmp_path, podman, broken=True)
    try:
        incident = await until(lambda: status_of(svc, "escalated"), 90, "incident escalated")
        assert incident["escalation_reason"] == "not_healed"
        assert [h["result"] for h in incident["heal_logs"]] == ["success"] * 3
        assert incident["healed"] is None
        text = await metrics_text(svc)
        assert 'autoheal_escalations_total{reason="not_healed"} 1.0' in text
        assert 'autoheal_verify_outcomes_total{outcome="not_held"} 3.0' in text

        async def rule_fires() -> bool:
            return await asyncio.to_thread(chain.firing, "AutoHealEscalationsRising")

        await until(rule_fires, 30, "AutoHealEscalationsRising firing")
        # Not healed is not "failing": the restarts themselves succeeded.
        assert not await asyncio.to_thread(chain.firing, "AutoHealPlaybookFailing")
    finally:
        await asyncio.to_thread(chain.stop)


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
@pytest.mark.usefixtures("programs")
@pytest.mark.timeout(150)
async def test_store_outage_alertmanager_retries_nothing_lost_one_heal(
    podman: Any, tmp_path: Path, make_service: Any, pg_database: str
) -> None:
    """PostgreSQL refuses connections while the alert fires: autoheal answers 503,
    Alertmanager counts failed deliveries and retries; once the store is back the alert is
    delivered, stored once and healed once."""
    svc = await make_service(worker=True, docker_url=podman.url, default_verify_seconds=30)
    chain = await chain_for(svc, tmp_path, podman)
    admin = [
        f'ALTER DATABASE "{pg_database}" ALLOW_CONNECTIONS false',
        f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{pg_database}'",
    ]
    try:
        failed_before = await asyncio.to_thread(chain.am_failed_notifications)
        await _pg(admin)
        try:
            await asyncio.to_thread(chain.break_target)

            async def refused() -> bool:
                failed = await asyncio.to_thread(chain.am_failed_notifications)
                return failed > failed_before

            await until(refused, 30, "Alertmanager sees a failed delivery")
            # What autoheal answered, as Alertmanager logged it: 503, the status it retries.
            log = (chain.alertmanager.root / "am.log").read_text()
            assert "unexpected status code 503" in log, log[-2000:]
            assert "status code 500" not in log
            resp = await svc.client.get("/readyz")
            assert resp.status == 503
        finally:
            await _pg([f'ALTER DATABASE "{pg_database}" ALLOW_CONNECTIONS true'])
        incident = await until(lambda: status_of(svc, "resolved"), 90, "incident resolved")
        assert len(await svc.incidents()) == 1
        (heal,) = incident["heal_logs"]
        assert heal["result"] == "success"
        assert incident["healed"] is True
    finally:
        await asyncio.to_thread(chain.stop)
