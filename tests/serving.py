"""autoheal as real processes for the multi-replica and crash tests: a job runner the
playbook calls (it counts heals per target), the config that points at it, replicas started
with `autoheal serve`, and an Alertmanager-like payload for a list of containers."""

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

from tests.conftest import ROOT, TOKEN, load_fixture
from tests.realprograms import free_port


@dataclass
class Runner:
    """The job runner the playbook calls: counts calls per target; a target may hang once."""

    calls: collections.Counter[str] = field(default_factory=collections.Counter)
    hang_once: set[str] = field(default_factory=set)
    slow: dict[str, float] = field(default_factory=dict)  # target -> seconds each call takes
    in_flight: collections.Counter[str] = field(default_factory=collections.Counter)
    most_in_flight: collections.Counter[str] = field(default_factory=collections.Counter)
    base: str = ""

    async def heal(self, request: web.Request) -> web.Response:
        body = await request.json()
        target = body["target"]
        self.calls[target] += 1
        if target in self.hang_once:
            self.hang_once.discard(target)
            await asyncio.sleep(60)  # the replica dies meanwhile
        self.in_flight[target] += 1
        self.most_in_flight[target] = max(self.most_in_flight[target], self.in_flight[target])
        try:
            await asyncio.sleep(self.slow.get(target, 0))
        finally:
            self.in_flight[target] -= 1
        return web.json_response({"restarted": target})


@pytest.fixture
async def runner(aiohttp_server: Any) -> AsyncIterator[Runner]:
    state = Runner()
    app = web.Application()
    app.router.add_post("/heal", state.heal)
    server = await aiohttp_server(app)
    state.base = str(server.make_url("")).rstrip("/")
    yield state


def write_config(tmp: Path, runner: Runner, matcher: str = 'container=~".+"') -> Path:
    folder = tmp / "playbooks"
    folder.mkdir(exist_ok=True)
    (folder / "classifiers.yaml").write_text((ROOT / "playbooks" / "classifiers.yaml").read_text())
    playbook = {
        "playbooks": [
            {
                "name": "restart via runner",
                "error_type": "OOM",
                "matchers": [matcher],
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


def start_replica(
    tmp: Path, name: str, database_url: str, config: Path, **env_extra: str
) -> Replica:
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
        **env_extra,
    }
    with (tmp / f"{name}.log").open("ab") as log:  # a restarted replica appends
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


@dataclass
class Served:
    """One `autoheal serve` process on SQLite, for the transport and fuzzing tests."""

    port: int
    process: subprocess.Popen[bytes]
    log: Path
    db: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        return self.log.read_text(errors="replace")


def start_served(tmp: Path, env_extra: dict[str, str] | None = None) -> Served:
    """Start `autoheal serve` (bearer TOKEN, SQLite in ``tmp``) and wait until it is ready."""
    from tests.realprograms import wait_for

    port = free_port()
    log = tmp / "autoheal.log"
    db = tmp / "autoheal.db"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "AUTOHEAL_LISTEN": f"127.0.0.1:{port}",
        "AUTOHEAL_AUTH_TOKEN": TOKEN,
        "AUTOHEAL_DATABASE_URL": f"sqlite+aiosqlite:///{db}",
        "AUTOHEAL_DOCKER_URL": "",
        **(env_extra or {}),
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "receiver", "serve"], env=env, cwd=ROOT, stdout=out, stderr=out
        )
    served = Served(port, process, log, db)

    def ready() -> bool:
        import urllib.request

        try:
            with urllib.request.urlopen(f"{served.url}/readyz", timeout=2) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    try:
        wait_for(ready, 30, "autoheal serve")
    except TimeoutError:
        served.stop()
        raise
    return served
