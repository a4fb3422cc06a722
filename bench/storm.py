"""Alerts to actions: 20,000 distinct firing alerts posted as Alertmanager would (groups of
10), a playbook whose action is a fast local HTTP call (a job runner this script runs), until
every incident's action has run; then 20,000 resends of one alert, which must run 1 action.

Real `autoheal serve` processes (1 on SQLite, or 1-3 on one PostgreSQL database), loopback
only. Prints the time to store every alert, the time until the last action ran, actions/s,
and the resend check. Figures, not assertions: quote them beside the same machine's others.

    python bench/storm.py [--store sqlite|postgresql] [--replicas 1] [--alerts 20000]
                          [--concurrency 256]

--concurrency is each replica's worker_concurrency (actions in flight). The service's default
of 4 suits container restarts that take seconds; a fast action in a storm wants more, and
the worker then claims, guards and records that many incidents per transaction.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.ingest import cpu_seconds  # noqa: E402
from tests.conftest import TOKEN  # noqa: E402
from tests.realprograms import listening  # noqa: E402
from tests.serving import Runner, oom_group, start_replica, write_config  # noqa: E402

PG_ADMIN = os.environ.get("AUTOHEAL_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


async def pg(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy (not idle or waiting on I/O) since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


async def wait(check, within: float, what: str) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    while not check():
        if time.perf_counter() - started > within:
            raise SystemExit(f"{what}: not within {within}s")
        await asyncio.sleep(0.02)
    return time.perf_counter()


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--alerts", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=256)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="autoheal-bench-storm-"))
    runner = Runner()
    app = web.Application()
    app.router.add_post("/heal", runner.heal)
    app_runner = web.AppRunner(app, access_log=None)
    await app_runner.setup()
    site = web.TCPSite(app_runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    runner.base = f"http://127.0.0.1:{port}"
    dbname = f"autoheal_bench_{uuid.uuid4().hex[:8]}"
    if args.store == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp}/autoheal.db"
    else:
        await pg(f'CREATE DATABASE "{dbname}"')
        url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{dbname}"
    config = write_config(tmp, runner)
    env = {
        "AUTOHEAL_LEASE_SECONDS": "120",
        "AUTOHEAL_WORKER_POLL_SECONDS": "1",
        "AUTOHEAL_LOG_LEVEL": "WARNING",
        "AUTOHEAL_WORKER_CONCURRENCY": str(args.concurrency),
    }
    replicas = [start_replica(tmp, f"r{i}", url, config, **env) for i in range(args.replicas)]
    try:
        for r in replicas:
            await wait(lambda r=r: listening(r.port), 60, "listening")
        await asyncio.sleep(1)  # migrations settle, workers up
        containers = [f"c{i}" for i in range(args.alerts)]
        payloads = [oom_group(containers[i : i + 10]) for i in range(0, args.alerts, 10)]
        queue: asyncio.Queue[tuple[int, dict]] = asyncio.Queue()  # type: ignore[type-arg]
        for i, p in enumerate(payloads):
            queue.put_nowait((i, p))
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with aiohttp.ClientSession(headers=headers) as http:

            async def client() -> None:
                while not queue.empty():
                    i, payload = queue.get_nowait()
                    replica = replicas[i % len(replicas)]
                    async with http.post(f"{replica.url}/api/v1/alerts", json=payload) as resp:
                        assert resp.status == 200, await resp.text()

            cpu_before = [cpu_seconds(r.process.pid) for r in replicas]
            own_before = time.process_time()
            machine_before = machine_busy_seconds()
            started = time.perf_counter()
            await asyncio.gather(*(client() for _ in range(args.connections)))
            stored = time.perf_counter()
            done = await wait(lambda: sum(runner.calls.values()) >= args.alerts, 1800, "actions")
            total = done - started
            twice = sum(1 for n in runner.calls.values() if n > 1)
            cpu = [
                cpu_seconds(r.process.pid) - b for r, b in zip(replicas, cpu_before, strict=True)
            ]
            own = time.process_time() - own_before
            machine = machine_busy_seconds() - machine_before
            print(
                f"{args.store}, {args.replicas} replica(s), concurrency {args.concurrency}: "
                f"{args.alerts} alerts stored in "
                f"{stored - started:.2f}s; every action run after {total:.2f}s "
                f"({args.alerts / total:.0f} actions/s); targets run more than once: {twice}"
            )
            print(
                f"CPU seconds: autoheal {' + '.join(f'{c:.1f}' for c in cpu)}, this script "
                f"(client and job runner) {own:.1f}, the whole machine {machine:.1f} of "
                f"{total * (os.cpu_count() or 1):.1f} available"
            )
            # 20,000 resends of one alert: one incident, one action.
            one = oom_group(["resent"])
            for r in range(0, args.alerts, 10):
                group = {**one, "alerts": one["alerts"] * 10}
                replica = replicas[(r // 10) % len(replicas)]
                async with http.post(f"{replica.url}/api/v1/alerts", json=group) as resp:
                    assert resp.status == 200
            await asyncio.sleep(3)
            print(f"{args.alerts} resends of one alert -> {runner.calls['resent']} action(s)")
    finally:
        for r in replicas:
            r.process.terminate()
        for r in replicas:
            r.process.wait(20)
        await app_runner.cleanup()
        if args.store == "postgresql":
            await pg(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
