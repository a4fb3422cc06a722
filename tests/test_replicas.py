"""Several `autoheal serve` processes on one PostgreSQL database: they migrate it together,
every payload goes to every replica, and each incident opens once and each heal runs once,
counted on a real action (an HTTP call to a server this test runs). A replica killed -9 in
the middle of an action is taken over by another after its lease."""

from __future__ import annotations

import asyncio
import collections
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import TOKEN, until
from tests.realprograms import listening
from tests.serving import Replica, Runner, get, oom_group, runner, start_replica, write_config

__all__ = ["runner"]  # the fixture, used by name


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


@pytest.mark.timeout(150)
async def test_an_action_longer_than_the_lease_runs_once(replicas: Any, runner: Runner) -> None:
    """Issue 16, item 8: with a 3 s lease and an action held 7.5 s, the claim's lease ran out
    mid-action and the same replica ran the action 3 times at once, the first attempts logged
    `interrupted` and later overwritten to `success`. The lease is renewed while it runs."""
    group = await replicas(2)
    runner.slow["slowpoke"] = 7.5  # two and a half leases
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        for r in group:  # as Alertmanager HA would: to every replica
            async with http.post(f"{r.url}/api/v1/alerts", json=oom_group(["slowpoke"])) as resp:
                assert resp.status == 200

        async def verified() -> Any:
            data = await get(http, group[0], "/api/v1/incidents", status="verifying")
            return data["items"][0] if data["items"] else None

        item = await until(verified, 40, "healed once and verifying")
        await asyncio.sleep(3.5)  # a second run, had one started, would be counted by now
        assert runner.calls["slowpoke"] == 1
        assert runner.most_in_flight["slowpoke"] == 1
        detail = await get(http, group[1], f"/api/v1/incidents/{item['id']}")
        assert [(h["result"], h["reason"]) for h in detail["heal_logs"]] == [("success", None)]
        assert detail["retry_count"] == 1
