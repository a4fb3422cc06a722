"""Grafana-managed alerts: its webhook contact point's payload (version 1, shaped as Grafana's
documentation and its alerting source show it) on the same endpoint, healed like an
Alertmanager alert, its links kept in the incident and the messages; and the real
Alertmanager autoheal asks is not taken for the alert's source."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TOKEN, load_fixture, restart_playbook
from tests.realprograms import free_port, start_alertmanager, stop_process
from tests.test_notify import with_telegram

FIRING = load_fixture("grafana_firing.json")
RESOLVED = load_fixture("grafana_resolved.json")


def payload(name: str) -> dict[str, Any]:
    return copy.deepcopy(FIRING if name == "firing" else RESOLVED)


async def only(svc: Any, task: str) -> dict[str, Any]:
    (item,) = [i for i in await svc.incidents() if i["task_name"] == task]
    found: dict[str, Any] = await svc.incident(item["id"])
    return found


@pytest.mark.usefixtures("scripted")
async def test_a_grafana_alert_heals_and_keeps_its_links(
    make_service: Any, playbooks_dir: Any, scripted: list[Any], telegram: Any
) -> None:
    svc = await make_service(
        playbooks=playbooks_dir(restart_playbook(verify_seconds=600)),
        **with_telegram(telegram),
    )
    answer = await svc.post("/api/v1/alerts", payload("firing"))
    assert answer.status == 200, await answer.text()
    assert (await answer.json())["alerts"] == 2
    await svc.settle()
    incident = await only(svc, "Scheduler memory high")
    assert (incident["source"], incident["error_type"]) == ("grafana", "OOM")
    assert incident["links"] == {
        "dashboard": FIRING["alerts"][0]["dashboardURL"],
        "panel": FIRING["alerts"][0]["panelURL"],
        "silence": FIRING["alerts"][0]["silenceURL"],
    }
    assert incident["generator_url"] == FIRING["alerts"][0]["generatorURL"]
    assert incident["status"] == "verifying"
    assert [c for _, c in scripted] == ["momo-scheduler"]
    nodata = await only(svc, "DatasourceNoData")  # no playbook: people are told
    assert nodata["escalation_reason"] == "no_playbook"
    assert list(nodata["links"]) == ["silence"]  # empty dashboard and panel URLs left out

    assert (await svc.post("/api/v1/alerts", payload("resolved"))).status == 200
    healed = await svc.incident(incident["id"])
    assert (healed["status"], healed["healed"]) == ("resolved", True)
    assert svc.sample("autoheal_signals_received_total", {"source": "grafana", "status": "firing"})

    await svc.deliver()
    texts = [m["text"] for m in telegram.delivered]
    (healed_text,) = [t for t in texts if t.startswith("<b>Healed")]
    assert f'href="{FIRING["alerts"][0]["panelURL"].replace("&", "&amp;")}">panel</a>' in (
        healed_text
    )
    assert ">dashboard</a>" in healed_text and ">silence</a>" in healed_text


async def test_grafana_payload_variants(make_service: Any) -> None:
    svc = await make_service()
    wrong = payload("firing") | {"version": "2"}
    assert (await svc.post("/api/v1/alerts", wrong)).status == 422
    unsafe = payload("firing")
    unsafe["alerts"][0]["dashboardURL"] = "javascript:alert(1)"
    assert (await svc.post("/api/v1/alerts", unsafe)).status == 200
    incident = await only(svc, "Scheduler memory high")
    assert "dashboard" not in incident["links"]  # only http(s) links are kept
    truncated = payload("firing") | {"truncatedAlerts": 3}
    assert (await svc.post("/api/v1/alerts", truncated)).status == 200
    fetched = {"result": "failed"}
    assert svc.sample("autoheal_truncated_alerts_fetched_total", fetched) == 3


@pytest.mark.usefixtures("programs")
async def test_the_alertmanager_asked_is_not_the_grafana_alert_source(
    make_service: Any, playbooks_dir: Any, scripted: list[Any], tmp_path: Path
) -> None:
    """A Grafana incident that waited (an approval) acts when approved: the re-check that
    would find no such alert in Alertmanager (and resolve it alert_gone) is not for it."""
    port = free_port()
    am = await asyncio.to_thread(
        start_alertmanager, tmp_path / "am", "http://127.0.0.1:9/none", TOKEN, None, port
    )
    try:
        svc = await make_service(
            playbooks=playbooks_dir(restart_playbook(approval="required", verify_seconds=600)),
            alertmanager_url=am.url,
        )
        assert (await svc.post("/api/v1/alerts", payload("firing"))).status == 200
        await svc.settle()
        incident = await only(svc, "Scheduler memory high")
        assert incident["status"] == "awaiting_approval"
        approved = await svc.post(f"/api/v1/incidents/{incident['id']}/approve", {"by": "ana"})
        assert approved.status == 200
        await svc.settle()
        assert (await svc.incident(incident["id"]))["status"] == "verifying"
        assert [c for _, c in scripted] == ["momo-scheduler"]
        await svc.worker.watch_verifying()  # never seen in that Alertmanager: waits
        assert (await svc.incident(incident["id"]))["status"] == "verifying"
    finally:
        await asyncio.to_thread(stop_process, am.process)
