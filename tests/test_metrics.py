"""Metrics for Grafana: time to heal, verify outcomes, and the gauges read from the store."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from receiver.app import create_app
from tests.conftest import Service, lifecycle_playbook, oom_alert
from tests.scripted_action import WITH_SCRIPTED

pytestmark = pytest.mark.usefixtures("scripted")


def resolved_of(payload: dict[str, Any]) -> dict[str, Any]:
    for alert in payload["alerts"]:
        alert["status"] = "resolved"
    return payload


async def scrape(svc: Service) -> str:
    resp = await svc.client.get("/metrics")
    assert resp.status == 200
    return await resp.text()


def value(text: str, name: str, **labels: str) -> float | None:
    """One sample of an exposition text, found by name and exact labels."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        m = re.fullmatch(r"([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)", line)
        if m and m.group(1) == name:
            got = ",".join(sorted((m.group(2) or "").split(","))) if m.group(2) else ""
            if got == want:
                return float(m.group(3))
    return None


async def test_time_to_heal_and_held_verification(
    make_service: Any, playbooks_dir: Any, make_alert: Any
) -> None:
    svc = await make_service(
        playbooks=playbooks_dir(lifecycle_playbook("scripted", "{}", verify_seconds=60))
    )
    await svc.post("/api/v1/alerts", oom_alert(make_alert, container="box"))
    await svc.settle()
    await asyncio.sleep(0.05)
    await svc.post("/api/v1/alerts", resolved_of(oom_alert(make_alert, container="box")))
    incident = await svc.only_incident()
    assert incident["status"] == "resolved"
    assert incident["healed"] is True
    assert 0.05 <= incident["time_to_heal_seconds"] < 30
    labels = {"error_type": "OOM", "playbook": "fix it"}
    assert svc.sample("autoheal_time_to_heal_seconds_count", labels) == 1
    assert 0.05 <= svc.sample("autoheal_time_to_heal_seconds_sum", labels) < 30
    assert svc.sample("autoheal_verify_outcomes_total", {"outcome": "held"}) == 1
    assert svc.sample("autoheal_incidents_resolved_total", {"how": "alert_resolved"}) == 1


async def test_resolved_before_any_repair_is_not_a_heal(
    make_service: Any, playbooks_dir: Any, make_alert: Any
) -> None:
    svc = await make_service(playbooks=playbooks_dir(lifecycle_playbook("scripted", "{}")))
    await svc.post("/api/v1/alerts", oom_alert(make_alert))
    await svc.post("/api/v1/alerts", resolved_of(oom_alert(make_alert)))  # worker never ran
    incident = await svc.only_incident()
    assert incident["status"] == "resolved"
    assert incident["healed"] is False
    assert incident["time_to_heal_seconds"] is None
    assert (
        svc.sample(
            "autoheal_time_to_heal_seconds_count", {"error_type": "OOM", "playbook": "fix it"}
        )
        == 0
    )
    assert svc.sample("autoheal_verify_outcomes_total", {"outcome": "held"}) == 0


async def test_quiet_scheduler_task_is_healed(
    make_service: Any, playbooks_dir: Any, make_exception: Any
) -> None:
    svc = await make_service(
        playbooks=playbooks_dir(
            lifecycle_playbook("scripted", "{}", error_type="DNS_FAIL", verify_seconds=0.1)
        )
    )
    await svc.post("/api/v1/exceptions", make_exception())
    await svc.settle()
    await asyncio.sleep(0.15)
    await svc.settle()
    incident = await svc.only_incident()
    assert incident["status"] == "resolved" and incident["healed"] is True
    labels = {"error_type": "DNS_FAIL", "playbook": "fix it"}
    assert svc.sample("autoheal_time_to_heal_seconds_count", labels) == 1
    assert svc.sample("autoheal_incidents_resolved_total", {"how": "quiet"}) == 1


async def test_store_gauges_survive_a_restart(
    make_service: Any,
    make_settings: Any,
    playbooks_dir: Any,
    make_alert: Any,
    aiohttp_client: Any,
) -> None:
    """Incidents by status and the backlog come from the store: a fresh process (or another
    replica) reports the same figures without having seen the alerts."""
    folder = playbooks_dir(
        lifecycle_playbook("scripted", "{container: '${labels.container}'}", verify_seconds=60)
    )
    svc = await make_service(playbooks=folder)
    body = make_alert(
        alerts=[
            {
                "fingerprint": f"fp{i}",
                "labels": {"alertname": "ContainerOOMKilled", "container": f"c{i}"},
            }
            for i in range(3)
        ]
    )
    await svc.post("/api/v1/alerts", body)
    await svc.post("/api/v1/alerts", make_alert(alerts=[{"fingerprint": "other"}]))  # no playbook
    await asyncio.sleep(0.02)
    text = await scrape(svc)
    assert value(text, "autoheal_incidents", status="open") == 3
    assert value(text, "autoheal_incidents", status="escalated") == 1
    assert value(text, "autoheal_worker_backlog") == 3
    assert (value(text, "autoheal_worker_backlog_oldest_seconds") or 0) > 0
    await svc.client.close()

    again = Service(
        await aiohttp_client(create_app(make_settings(playbooks=folder), actions=WITH_SCRIPTED))
    )
    text = await scrape(again)
    assert value(text, "autoheal_incidents", status="open") == 3
    assert value(text, "autoheal_worker_backlog") == 3
    await again.settle()
    text = await scrape(again)
    assert value(text, "autoheal_incidents", status="open") == 0
    assert value(text, "autoheal_incidents", status="verifying") == 3
    assert value(text, "autoheal_worker_backlog") == 0
    assert value(text, "autoheal_worker_backlog_oldest_seconds") == 0
    assert (value(text, "autoheal_incident_oldest_seconds", status="verifying") or -1) >= 0


def test_metric_names_follow_prometheus_conventions() -> None:
    """Counters end in _total, durations in _seconds; no label could hold an unbounded value."""
    from prometheus_client import CollectorRegistry

    from receiver.metrics import build_metrics

    registry = CollectorRegistry()
    build_metrics(registry)
    unbounded = {"fingerprint", "target", "container", "message", "incident", "id", "task"}
    for family in registry.collect():
        assert family.name.startswith("autoheal_")
        if family.type == "counter":
            assert not family.name.endswith("_total")  # the client appends it
        if "duration" in family.name or "time" in family.name or "age" in family.name:
            assert family.name.endswith("_seconds"), family.name
        for sample in family.samples:
            assert not unbounded & set(sample.labels), (family.name, sample.labels)
