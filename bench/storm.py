"""Alerts to actions: 20,000 distinct firing alerts posted as Alertmanager would (groups of
10), a playbook whose action is a fast local HTTP call (a job runner this script runs), until
every incident's action has run; then 20,000 resends of one alert, which must run 1 action.

Real `autoheal serve` processes (1 on SQLite, or 1-3 on one PostgreSQL database), loopback
only. Prints the time to store every alert, the time until the last action ran, actions/s,
and the resend check. Figures, not assertions: quote them beside the same machine's others.

Before autoheal, the same alerts go to a bare relay (an aiohttp handler that calls the job
runner once per alert with the same aiohttp client, storing and deciding nothing): the floor
for this work in one Python process on this machine. autoheal's time over the relay's, in
the same run, is the figure that carries from one machine to another.

    python bench/storm.py [--store sqlite|postgresql] [--replicas 1] [--alerts 20000]
                          [--concurrency 256] [--rounds 3] [--no-bare] [--log-level L]

--concurrency is each replica's worker_concurrency (actions in flight). The service's default
of 4 suits container restarts that take seconds; a fast action in a storm wants more, and
the worker then claims, guards and records that many incidents per transaction.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.ingest import cpu_seconds  # noqa: E402
from tests.conftest import TOKEN  # noqa: E402
from tests.realprograms import free_port, listening  # noqa: E402
from tests.serving import Replica, Runner, oom_group, start_replica, write_config  # noqa: E402

# The floor: receive the webhook, call the runner for each alert (as many in flight as the
# worker's concurrency), answer. Nothing stored, classified, guarded or recorded.
BARE_RELAY = """
import asyncio, sys
import aiohttp, orjson
from aiohttp import web

port, runner, limit = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
calls = set()

async def call(app, target):
    async with app["gate"]:
        async with app["http"].post(runner, json={"target": target}) as resp:
            await resp.read()

async def handle(request):
    body = await request.json()
    for alert in body["alerts"]:
        task = asyncio.create_task(call(request.app, alert["labels"]["container"]))
        calls.add(task)
        task.add_done_callback(calls.discard)
    return web.json_response({"status": "ok"})

async def clients(app):
    app["gate"] = asyncio.Semaphore(limit)
    app["http"] = aiohttp.ClientSession(json_serialize=lambda o: orjson.dumps(o).decode())
    yield
    await app["http"].close()

app = web.Application(client_max_size=1 << 20)
app.router.add_post("/api/v1/alerts", handle)
app.cleanup_ctx.append(clients)
web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)
"""

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


@dataclass
class Run:
    stored: float  # seconds until every alert was answered 2xx
    total: float  # seconds until every action ran
    cpu: list[float]  # CPU seconds of each server process
    own: float  # CPU seconds of this script (client and job runner)
    machine: float  # CPU seconds all cores were busy


async def storm(
    http: aiohttp.ClientSession,
    runner: Runner,
    servers: list[Replica],
    payloads: list[dict[str, Any]],
    connections: int,
) -> Run:
    """Post every group (spread over the servers) and wait until the runner saw every alert."""
    alerts = sum(len(p["alerts"]) for p in payloads)
    queue: asyncio.Queue[tuple[int, dict[str, Any]]] = asyncio.Queue()
    for i, p in enumerate(payloads):
        queue.put_nowait((i, p))

    async def client() -> None:
        while not queue.empty():
            i, payload = queue.get_nowait()
            server = servers[i % len(servers)]
            async with http.post(f"{server.url}/api/v1/alerts", json=payload) as resp:
                assert resp.status == 200, await resp.text()

    cpu_before = [cpu_seconds(s.process.pid) for s in servers]
    own_before = time.process_time()
    machine_before = machine_busy_seconds()
    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(connections)))
    stored = time.perf_counter()
    done = await wait(lambda: sum(runner.calls.values()) >= alerts, 1800, "actions")
    return Run(
        stored - started,
        done - started,
        [cpu_seconds(s.process.pid) - b for s, b in zip(servers, cpu_before, strict=True)],
        time.process_time() - own_before,
        machine_busy_seconds() - machine_before,
    )


def bare_relay(tmp: Path, runner: Runner, limit: int) -> Replica:
    port = free_port()
    script = tmp / "bare_relay.py"
    script.write_text(BARE_RELAY)
    argv = [sys.executable, str(script), str(port), f"{runner.base}/heal", str(limit)]
    return Replica("bare", port, subprocess.Popen(argv))


def ratio_line(name: str, ratios: list[float]) -> str:
    return (
        f"{name} {statistics.median(ratios):.2f} (rounds: {', '.join(f'{r:.2f}' for r in ratios)})"
    )


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--alerts", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3, help="bare relay, then autoheal, each")
    parser.add_argument("--no-bare", action="store_true", help="skip the bare relay's runs")
    parser.add_argument(
        "--log-level",
        default="WARNING",
        help="autoheal's log level: INFO writes a line per incident transition (the default "
        "of a deployment); WARNING, as earlier figures were measured, writes none",
    )
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
    headers = {"Authorization": f"Bearer {TOKEN}"}
    http = aiohttp.ClientSession(headers=headers)
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
        "AUTOHEAL_LOG_LEVEL": args.log_level,
        "AUTOHEAL_WORKER_CONCURRENCY": str(args.concurrency),
    }
    relay = None if args.no_bare else bare_relay(tmp, runner, args.concurrency)
    replicas = [start_replica(tmp, f"r{i}", url, config, **env) for i in range(args.replicas)]
    processes = [*replicas, *([relay] if relay else [])]
    try:
        for r in processes:
            await wait(lambda r=r: listening(r.port), 60, "listening")
        await asyncio.sleep(1)  # migrations settle, workers up
        times: list[float] = []
        cpus: list[float] = []
        for n in range(args.rounds):
            # Each round alerts on containers of its own: every alert opens a new incident.
            containers = [f"r{n}c{i}" for i in range(args.alerts)]
            payloads = [oom_group(containers[i : i + 10]) for i in range(0, args.alerts, 10)]
            bare = None
            if relay is not None:
                bare = await storm(http, runner, [relay], payloads, args.connections)
                runner.calls.clear()
                print(
                    f"round {n + 1}: bare relay: {args.alerts} alerts answered in "
                    f"{bare.stored:.2f}s; every call made after {bare.total:.2f}s "
                    f"({args.alerts / bare.total:.0f} calls/s); CPU seconds: relay "
                    f"{bare.cpu[0]:.1f}, this script {bare.own:.1f}"
                )
            run = await storm(http, runner, replicas, payloads, args.connections)
            twice = sum(1 for calls in runner.calls.values() if calls > 1)
            runner.calls.clear()
            print(
                f"round {n + 1}: autoheal, {args.store}, {args.replicas} replica(s), "
                f"concurrency {args.concurrency}: {args.alerts} alerts stored in "
                f"{run.stored:.2f}s; every action run after {run.total:.2f}s "
                f"({args.alerts / run.total:.0f} actions/s); targets run more than once: "
                f"{twice}; CPU seconds: autoheal {' + '.join(f'{c:.1f}' for c in run.cpu)}, "
                f"this script (client and job runner) {run.own:.1f}, the whole machine "
                f"{run.machine:.1f} of {run.total * (os.cpu_count() or 1):.1f} available"
            )
            if bare is not None:
                times.append(run.total / bare.total)
                cpus.append(sum(run.cpu) / sum(bare.cpu))
        if times:
            print(ratio_line("autoheal over the bare relay (median): time", times))
            print(ratio_line("autoheal over the bare relay (median): server CPU", cpus))
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
        await http.close()
        for r in processes:
            r.process.terminate()
        for r in processes:
            r.process.wait(20)
        await app_runner.cleanup()
        if args.store == "postgresql":
            await pg(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
