"""Several `autoheal serve` processes on one PostgreSQL database: they migrate it together,
every payload goes to every replica, and each incident opens once and each heal runs once,
counted on a real action (an HTTP call to a server this test runs). A replica killed -9 in
the middle of an action is taken over by another after its lease."""

from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.conftest import ROOT, TOKEN, load_fixture, until
from tests.realprograms import free_port, listening


@dataclass
class Runner:
    """The job runner the playbook calls: counts calls per target; a target may hang once."""

    calls: collections.Counter[str] = field(default_factory=collections.Counter)
    hang_once: set[str] = field(default_factory=set)
    base: str = ""

    async def heal(self, request: web.Request) -> web.Response:
        body = await request.json()
        target = body["target"]
        self.calls[target] += 1
        if target in self.hang_once:
            self.hang_once.discard(target)
            await asyncio.sleep(60)  # the replica dies meanwhile
        return web.json_response({"restarted": target})


@pytest.fixture
async def runner(aiohttp_server: Any) -> AsyncIterator[Runner]:
    state = Runner()
    app = web.Application()
    app.router.add_post("/heal", state.heal)
    server = await aiohttp_server(app)
    state.base = str(server.make_url("")).rstrip("/")
    yield state


def write_config(tmp: Path, runner: Runner) -> Path:
    folder = tmp / "playbooks"
    folder.mkdir(exist_ok=True)
    (folder / "classifiers.yaml").write_text((ROOT / "playbooks" / "classifiers.yaml").read_text())
    playbook = {
        "playbooks": [
            {
                "name": "restart via runner",
                "error_type": "OOM",
                "matchers": ['container=~".+"'],
                "action": {
                    "type": "http",
                    "params": {
                        "url": f"{runner.base}/heal",
                        "body": {"target": "${labels.container}"},
                        "target": "${labels.container}",
                    },
                },
                "cooldown_minutes": 0,
                "max_retries": 3,
                "verify_seconds": 600,
            }
        ]
    }
    (folder / "runner.yaml").write_text(json.dumps(playbook))
    config = tmp / "autoheal.yaml"
    config.write_text(json.dumps({"http_allow": [f"{runner.base}/"], "playbooks": str(folder)}))
    return config


@dataclass
class Replica:
    name: str
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def start_replica(tmp: Path, name: str, database_url: str, config: Path) -> Replica:
    port = free_port()
    env = {
        **os.environ,
        "AUTOHEAL_LISTEN": f"127.0.0.1:{port}",
        "AUTOHEAL_AUTH_TOKEN": TOKEN,
        "AUTOHEAL_DATABASE_URL": database_url,
        "AUTOHEAL_DOCKER_URL": "",
        "AUTOHEAL_REPLICA_ID": name,
        "AUTOHEAL_WORKER_POLL_SECONDS": "0.2",
        "AUTOHEAL_LEASE_SECONDS": "3",
        "AUTOHEAL_RETRY_BACKOFF_SECONDS": "0",
    }
    with (tmp / f"{name}.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "receiver", "--config", str(config), "serve"],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=log,
        )
    return Replica(name, port, process)


async def get(http: aiohttp.ClientSession, replica: Replica, path: str, **params: Any) -> Any:
    async with http.get(f"{replica.url}{path}", params=params) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


def oom_group(containers: list[str]) -> dict[str, Any]:
    payload = load_fixture("firing.json")
    base = payload["alerts"][0]
    payload["alerts"] = [
        {
            **base,
            "fingerprint": f"fp-{c}",
            "labels": {"alertname": "ContainerOOMKilled", "container": c, "severity": "critical"},
        }
        for c in containers
    ]
    return payload


@pytest.fixture
async def replicas(
    tmp_path: Path, pg_database: str | None, runner: Runner, request: pytest.FixtureRequest
) -> AsyncIterator[Any]:
    """Start N replicas on a fresh (unmigrated) database: they migrate it together."""
    from tests.conftest import _pg, pg_url, require

    if pg_database is None:
        require("PostgreSQL at 127.0.0.1:5432")
    await _pg(
        ["DROP SCHEMA public CASCADE", "CREATE SCHEMA public"],
        f"postgresql://postgres@127.0.0.1:5432/{pg_database}",
    )
    config = write_config(tmp_path, runner)
    started: list[Replica] = []

    async def start(n: int) -> list[Replica]:
        group = [start_replica(tmp_path, f"r{i}", pg_url(pg_database), config) for i in range(n)]
        started.extend(group)
        for r in group:
            await until(lambda r=r: asyncio.to_thread(listening, r.port), 60, f"{r.name} listening")
        return group

    yield start
    for r in started:
        if r.process.poll() is None:
            r.process.terminate()
    for r in started:
        try:
            r.process.wait(15)
        except subprocess.TimeoutExpired:
            r.process.kill()
    logs = "".join((tmp_path / f"{r.name}.log").read_text(errors="replace") for r in started)
    assert "Traceback" not in logs or "CancelledError" in logs, logs[-3000:]


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.timeout(150)
async def test_every_payload_to_every_replica_heals_once(
    replicas: Any, runner: Runner, n: int
) -> None:
    group = await replicas(n)
    containers = [f"c{i}" for i in range(24)]
    payloads = [oom_group(containers[i : i + 6]) for i in range(0, 24, 6)]
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as http:

        async def post(replica: Replica, payload: Any) -> int:
            async with http.post(f"{replica.url}/api/v1/alerts", json=payload) as resp:
                return resp.status

        # Each payload to each replica at once, twice over (Alertmanager HA resends).
        statuses = await asyncio.gather(
            *(post(r, p) for _ in range(2) for p in payloads for r in group)
        )
        assert set(statuses) == {200}

        async def all_verifying() -> bool:
            data = await get(http, group[0], "/api/v1/incidents", status="verifying", limit=500)
            return bool(data["total"] == 24)

        await until(all_verifying, 60, "every incident healed and verifying")
        await asyncio.sleep(1.0)  # any second run would show up by now
        data = await get(http, group[-1], "/api/v1/incidents", limit=500)
        assert data["total"] == 24  # each incident opened once
        assert runner.calls == collections.Counter({c: 1 for c in containers})  # healed once
        by_replica: collections.Counter[str] = collections.Counter()
        for item in data["items"]:
            assert item["occurrences"] == 2 * n
            detail = await get(http, group[0], f"/api/v1/incidents/{item['id']}")
            (log,) = detail["heal_logs"]
            assert log["result"] == "success"
            by_replica[log["replica"]] += 1
        # The store-derived gauges agree whichever replica is scraped.
        scraped = []
        for r in group:
            async with http.get(f"{r.url}/metrics") as resp:
                text = await resp.text()
            scraped.append(
                [line for line in text.splitlines() if line.startswith("autoheal_incidents{")]
            )
        assert all(s == scraped[0] for s in scraped)
        print(f"heals by replica: {dict(by_replica)}")


@pytest.mark.timeout(150)
async def test_replica_killed_mid_action_is_taken_over(replicas: Any, runner: Runner) -> None:
    group = await replicas(2)
    runner.hang_once.add("victim")
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.post(f"{group[0].url}/api/v1/alerts", json=oom_group(["victim"])) as resp:
            assert resp.status == 200

        async def healing() -> Any:
            data = await get(http, group[0], "/api/v1/incidents", status="healing")
            if data["items"] and runner.calls["victim"] == 1:
                return await get(http, group[0], f"/api/v1/incidents/{data['items'][0]['id']}")
            return None

        incident = await until(healing, 30, "the action in flight")
        (pending,) = incident["heal_logs"]
        holder = next(r for r in group if r.name == pending["replica"])
        other = next(r for r in group if r is not holder)
        holder.process.send_signal(signal.SIGKILL)  # mid-action, no cleanup
        holder.process.wait(10)

        async def verified() -> Any:
            detail = await get(http, other, f"/api/v1/incidents/{incident['id']}")
            return detail if detail["status"] == "verifying" else None

        detail = await until(verified, 60, "taken over and healed")
        assert [(h["result"], h["reason"], h["replica"]) for h in detail["heal_logs"]] == [
            ("failed", "interrupted", holder.name),
            ("success", None, other.name),
        ]
        assert runner.calls["victim"] == 2
        healing_now = await get(http, other, "/api/v1/incidents", status="healing")
        assert healing_now["total"] == 0
