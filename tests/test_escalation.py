"""Escalation into the real Alertmanager: an AutoHealEscalated alert per escalated incident,
routed to a second (on-call) receiver, re-posted while the incident stays escalated, resolved
when it resolves; routed back to autoheal it is acknowledged and never healed."""

from __future__ import annotations

import asyncio
import urllib.parse
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.conftest import TOKEN, until

DRIVE = "invalid_grant: Token has been expired or revoked."


def am_config(autoheal_url: str, oncall_url: str) -> str:
    return f"""
route:
  receiver: autoheal
  group_by: [alertname, incident_id]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
  routes:
    - matchers: ['alertname="AutoHealEscalated"']
      receiver: on-call
      continue: true        # and also back to autoheal, which must ignore it
    - matchers: ['alertname="AutoHealEscalated"']
      receiver: autoheal
receivers:
  - name: autoheal
    webhook_configs:
      - url: {autoheal_url}
        send_resolved: true
        http_config:
          authorization: {{type: Bearer, credentials_file: "{{token_file}}"}}
  - name: on-call
    webhook_configs:
      - url: {oncall_url}
        send_resolved: true
"""


async def am_alerts(am_url: str) -> list[dict[str, Any]]:
    query = urllib.parse.urlencode({"filter": 'alertname="AutoHealEscalated"'})
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{am_url}/api/v2/alerts?{query}") as resp,
    ):
        assert resp.status == 200
        alerts: list[dict[str, Any]] = await resp.json()
        return alerts


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
@pytest.mark.usefixtures("programs")
@pytest.mark.timeout(120)
async def test_escalation_reaches_on_call_through_alertmanager_and_resolves(
    tmp_path: Path, make_service: Any, make_exception: Any, aiohttp_server: Any
) -> None:
    from tests.realprograms import free_port, start_alertmanager, stop_process

    oncall: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        oncall.append(await request.json())
        return web.Response(status=200)

    recorder = web.Application()
    recorder.router.add_post("/oncall", hook)
    oncall_server = await aiohttp_server(recorder)

    # Alertmanager's port first: autoheal is told where it is.
    am_port = free_port()
    svc = await make_service(
        worker=True,
        alertmanager_url=f"http://127.0.0.1:{am_port}",
        alertmanager_repost_seconds=1,
        external_url="http://autoheal.example:9095",
    )
    autoheal_hook = str(svc.client.make_url("/api/v1/alerts"))
    am = await asyncio.to_thread(
        start_alertmanager,
        tmp_path / "am",
        autoheal_hook,
        TOKEN,
        am_config(autoheal_hook, str(oncall_server.make_url("/oncall"))),
        am_port,
    )
    try:
        report = make_exception(task="drive_sync", message=DRIVE)
        assert (await svc.post("/api/v1/exceptions", report)).status == 202
        (incident,) = await until(lambda: svc.incidents(status="escalated"), 20, "escalated")

        async def in_alertmanager() -> list[dict[str, Any]]:
            return [a for a in await am_alerts(am.url) if a["status"]["state"] == "active"]

        (alert,) = await until(in_alertmanager, 20, "AutoHealEscalated in Alertmanager")
        labels = alert["labels"]
        assert labels["incident_id"] == str(incident["id"])
        assert labels["error_type"] == "AUTH_FAIL"
        assert labels["reason"] == "alert_only"
        assert labels["playbook"] == "Google Drive auth failure"
        assert labels["original_alertname"] == "drive_sync"
        assert labels["severity"] == "warning"
        assert "could not heal drive_sync" in alert["annotations"]["summary"]
        assert "Tried: 1 attempt(s)" in alert["annotations"]["description"]
        assert (
            alert["generatorURL"]
            == f"http://autoheal.example:9095/api/v1/incidents/{incident['id']}"
        )

        async def paged() -> Any:
            return [
                a
                for body in oncall
                for a in body["alerts"]
                if a["labels"].get("alertname") == "AutoHealEscalated" and a["status"] == "firing"
            ]

        await until(paged, 20, "on-call receiver got the escalation")
        # Re-posted while escalated: its endsAt moves on.
        first_end = alert["endsAt"]

        async def extended() -> bool:
            (now,) = await am_alerts(am.url)
            return bool(now["endsAt"] > first_end)

        await until(extended, 20, "endsAt extended by a re-post")
        # Routed back to autoheal as well: acknowledged, not a new incident.
        await until(
            lambda: asyncio.sleep(
                0,
                svc.sample(
                    "autoheal_signals_received_total",
                    {"source": "alertmanager", "status": "ignored"},
                )
                > 0,
            ),
            20,
            "autoheal ignored its own alert",
        )
        assert len(await svc.incidents()) == 1

        # The task recovers: the incident resolves, so does the escalation alert.
        assert (await svc.post("/api/v1/success", {"task": "drive_sync"})).status == 200

        async def resolved_to_oncall() -> Any:
            return [
                a
                for body in oncall
                for a in body["alerts"]
                if a["labels"].get("alertname") == "AutoHealEscalated" and a["status"] == "resolved"
            ]

        await until(resolved_to_oncall, 30, "on-call receiver got the resolve")
        assert all(a["status"]["state"] != "active" for a in await am_alerts(am.url))
        assert len(await svc.incidents()) == 1
    finally:
        await asyncio.to_thread(stop_process, am.process)
