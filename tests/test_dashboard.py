"""grafana/: the dashboard is well formed, and every panel's PromQL, with Grafana's variables
and macros substituted, parses and returns data from the real Prometheus after a scenario
that gives each panel something to show (Grafana itself has no package here)."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chain import start_chain
from tests.conftest import ROOT, TOKEN, Service, until
from tests.test_chain import status_of

DASHBOARD = ROOT / "grafana" / "dashboards" / "autoheal.json"
REQUIRED = {
    "Incidents opened by error type",
    "Incidents by status (store)",
    "Heal success ratio by playbook",
    "Time to heal p50 / p95",
    "Attempts by result",
    "Escalations by reason",
    "Guard refusals",
    "Signals received",
    "Action duration p95",
    "Worker backlog",
    "Notifications",
    "Claims per replica",
    "Attempts per replica",
}


def load() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def substitute(expr: str, instance: str) -> str:
    """What Grafana sends: variables filled, range macros as durations covering the scenario."""
    values = {
        "$__rate_interval": "2m",
        "$__interval": "15s",
        "$__range": "5m",
        "$job": "autoheal",
        # Grafana escapes a regex variable's value for PromQL: \\. inside the string.
        "$instance": instance.replace(".", "\\\\."),
    }
    for name, value in values.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, expr
    return expr


def test_dashboard_model() -> None:
    """Importable into Grafana 10+: stable uid, a data source variable every query uses,
    the required panels, no overlapping grid positions."""
    dash = load()
    assert dash["uid"] == "autoheal-overview"
    assert dash["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert {"job", "instance"} <= set(variables)
    assert {p["title"] for p in panels(dash)} >= REQUIRED
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for p in dash["panels"]:
        g = p["gridPos"]
        mine = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not cells & mine, p["title"]
        assert g["x"] + g["w"] <= 24
        cells |= mine
        if p["type"] != "row":
            assert p["datasource"]["uid"] == "${datasource}"
            assert p["targets"]
            for t in p["targets"]:
                assert t["datasource"]["uid"] == "${datasource}"


def test_provisioning_files() -> None:
    dashboards = yaml.safe_load(
        (ROOT / "grafana/provisioning/dashboards/autoheal.yaml").read_text()
    )
    assert dashboards["apiVersion"] == 1
    assert dashboards["providers"][0]["type"] == "file"
    sources = yaml.safe_load(
        (ROOT / "grafana/provisioning/datasources/prometheus.yaml").read_text()
    )
    assert sources["datasources"][0]["type"] == "prometheus"


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
@pytest.mark.usefixtures("programs")
@pytest.mark.timeout(150)
async def test_every_panel_returns_data_after_a_scenario(
    podman: Any,
    tmp_path: Path,
    make_service: Any,
    make_alert: Any,
    make_exception: Any,
    aiohttp_server: Any,
) -> None:
    """A heal that holds (opened, attempts, action duration, verify held, time to heal,
    signals firing and resolved), an alert no playbook matches (an escalation), and a second
    report for the same target during the playbook's cooldown (a guard refusal); a webhook
    channel told of the heal and the escalation; a declared task's run, start to success."""
    import shutil

    from aiohttp import web

    from receiver.client import Client

    folder = tmp_path / "playbooks"
    shutil.copytree(ROOT / "playbooks", folder)
    (folder / "tasks.yaml").write_text("tasks:\n  - {name: nightly_export, every_minutes: 60}\n")

    async def hook(request: web.Request) -> web.Response:
        return web.Response(status=204)

    receiver = web.Application()
    receiver.router.add_post("/hook", hook)
    people = await aiohttp_server(receiver)
    svc: Service = await make_service(
        worker=True,
        docker_url=podman.url,
        default_verify_seconds=30,
        notify_webhook_url=str(people.make_url("/hook")),
        notify_batch_seconds=0.2,
        playbooks=folder,
        task_watch_seconds=0.5,
    )
    url = str(svc.client.make_url("")).rstrip("/")
    chain = await asyncio.to_thread(start_chain, tmp_path, podman, url, TOKEN)
    try:
        await asyncio.to_thread(chain.break_target)
        await until(lambda: status_of(svc, "resolved"), 60, "incident resolved")
        await svc.post("/api/v1/alerts", make_alert(alerts=[{"fingerprint": "nobody"}]))
        report = make_exception(
            task="sync_orders",
            message="could not connect to server: Connection refused",
            labels={"container": "momo-db"},
        )
        assert (await svc.post("/api/v1/exceptions", report)).status == 202
        client = Client(url, token=TOKEN, spool=tmp_path / "spool")
        assert await client.astart("nightly_export", run="n1")
        assert await client.asuccess("nightly_export", run="n1")

        async def scraped() -> bool:
            expr = (
                'autoheal_guard_refusals_total{guard="cooldown"} > 0 and on (instance) '
                'autoheal_escalations_total{reason="no_playbook"} > 0 and on (instance) '
                "autoheal_time_to_heal_seconds_count > 0 and on (instance) "
                'autoheal_notifications_total{result="sent"} > 0 and on (instance) '
                "autoheal_task_last_success_timestamp_seconds > 0 and on (instance) "
                "autoheal_task_run_seconds_count > 0"
            )
            return bool(await asyncio.to_thread(chain.query, expr))

        await until(scraped, 30, "Prometheus scraped the scenario")
        instance = url.split("//", 1)[1]
        empty = []
        for panel in panels(load()):
            for target in panel["targets"]:
                expr = substitute(target["expr"], instance)
                series = await asyncio.to_thread(chain.query, expr)  # bad_data fails here
                finite = [s for s in series if not math.isnan(float(s["value"][1]))]
                if not finite:
                    empty.append((panel["title"], expr, series))
        assert not empty, empty
    finally:
        await asyncio.to_thread(chain.stop)
