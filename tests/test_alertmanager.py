"""A real Alertmanager delivering real webhooks to autoheal, which restarts a real container."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from tests.conftest import TOKEN, require, until


async def push(am_url: str, alert: dict[str, Any]) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{am_url}/api/v2/alerts", json=[alert]) as resp,
    ):
        assert resp.status == 200, await resp.text()


async def test_alertmanager_to_container_restart_and_resolution(
    podman: Any, tmp_path: Path, make_service: Any, playbooks_dir: Any
) -> None:
    from tests.realprograms import start_alertmanager, stop_process

    if shutil.which("prometheus-alertmanager") is None:
        require("prometheus-alertmanager (apt-get install prometheus-alertmanager)")
    podman.container("app")
    svc = await make_service(
        worker=True,
        docker_url=podman.url,
        playbooks=playbooks_dir(
            "playbooks:\n  - name: oom restart\n    error_type: OOM\n"
            "    matchers: ['container=~\".+\"']\n    verify_seconds: 60\n    cooldown_minutes: 0\n"
            "    action: {type: docker_restart, params: {container: '${labels.container}', stop_timeout: 0}}\n"
        ),
    )
    webhook = str(svc.client.make_url("/api/v1/alerts"))
    am = start_alertmanager(tmp_path / "am", webhook, TOKEN)
    try:
        before = podman.started_at("app")
        starts = datetime.now(UTC) - timedelta(seconds=30)
        alert = {
            "labels": {
                "alertname": "ContainerOOMKilled",
                "container": "app",
                "severity": "critical",
            },
            "annotations": {"summary": "app was OOM-killed"},
            "startsAt": starts.isoformat(),
            "generatorURL": "http://127.0.0.1/graph",
        }
        await push(am.url, alert)

        async def restarted() -> Any:
            items = await svc.incidents()
            if items and items[0]["status"] == "verifying":
                return items[0]
            return None

        incident = await until(restarted, 20, "restarted")
        assert podman.started_at("app") != before
        assert incident["task_name"] == "ContainerOOMKilled"
        assert incident["error_type"] == "OOM"
        # Resolve it at Alertmanager: the resolved notification resolves the incident.
        await push(
            am.url, {**alert, "endsAt": (datetime.now(UTC) - timedelta(seconds=1)).isoformat()}
        )

        async def resolved() -> Any:
            return (await svc.incident(incident["id"]))["status"] == "resolved"

        await until(resolved, 20, "resolved")
        detail = await svc.incident(incident["id"])
        assert len(detail["heal_logs"]) == 1  # one heal, however often Alertmanager sent it
    finally:
        stop_process(am.process)
