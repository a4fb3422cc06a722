"""Ingest benchmark: autoheal (embedded SQLite default) against a bare aiohttp handler.

Both servers run as their own processes on loopback; one client process drives each with the
same load (32 connections) for the same time, several rounds taken in turn. Prints the median
alerts/s, p50/p99 latency, server CPU per alert, how busy the server's event-loop thread was
(near 1.0 it is the limit), the median ratio autoheal/bare (with the range of the per-round
ratios) for every scenario, and autoheal's peak RSS. Figures, not
assertions: the machine is shared and noisy, so compare the ratios of one run.

    python bench/ingest.py [--seconds 5] [--rounds 3] [--connections 32]
    python bench/ingest.py --store postgresql --replicas 3   # several replicas, one database

With several replicas the client's connections are spread over them (as a load balancer
would); CPU per alert adds up all replicas, loop busy is the busiest replica's.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-token"

BARE_SERVER = """
import sys
from aiohttp import web

async def handle(request):
    await request.read()
    return web.json_response({"status": "ok"})

app = web.Application(client_max_size=1 << 20)
app.router.add_post("/api/v1/alerts", handle)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""

ALERT = {
    "status": "firing",
    "labels": {
        "alertname": "ContainerDown",
        "container": "app",
        "instance": "web1",
        "severity": "critical",
    },
    "annotations": {"summary": "test ContainerDown"},
    "startsAt": "2026-11-28T03:33:42.963475Z",
    "endsAt": "0001-01-01T00:00:00Z",
    "generatorURL": "http://127.0.0.1:19090/graph",
    "fingerprint": "0bd26ca12c649ee7",
}


def payload(n_alerts: int, unique: bool) -> bytes:
    alerts = []
    for i in range(n_alerts):
        alert = copy.deepcopy(ALERT)
        if unique:
            fp = uuid.uuid4().hex[:16]
            alert["fingerprint"] = fp
            alert["labels"]["instance"] = fp
        else:
            alert["fingerprint"] = f"resend{i:04d}"
        alerts.append(alert)
    body = {
        "receiver": "autoheal",
        "status": "firing",
        "alerts": alerts,
        "groupLabels": {"alertname": "ContainerDown"},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://127.0.0.1:9093",
        "version": "4",
        "groupKey": '{}:{alertname="ContainerDown"}',
        "truncatedAlerts": 0,
    }
    return json.dumps(body).encode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_ready(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(url) as resp:
                    if resp.status < 500:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise TimeoutError(url)


async def drive(
    urls: list[str], n_alerts: int, unique: bool, seconds: float, conns: int
) -> dict[str, float]:
    """Closed loop: `conns` clients send back to back for `seconds`."""
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
    # Pre-build bodies so the client spends its time sending, not serialising.
    bodies = [payload(n_alerts, unique) for _ in range(2000 if unique else 1)]
    latencies: list[float] = []
    errors = 0
    stop = time.monotonic() + seconds

    async def client(session: aiohttp.ClientSession, k: int) -> None:
        nonlocal errors
        i = k
        while time.monotonic() < stop:
            body = bodies[i % len(bodies)]
            if unique and i >= len(bodies):
                body = payload(n_alerts, True)
            i += conns
            t0 = time.perf_counter()
            async with session.post(urls[k % len(urls)], data=body, headers=headers) as resp:
                await resp.read()
                if resp.status != 200:
                    errors += 1
            latencies.append(time.perf_counter() - t0)

    connector = aiohttp.TCPConnector(limit=conns)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.monotonic()
        await asyncio.gather(*(client(session, k) for k in range(conns)))
        elapsed = time.monotonic() - started
    latencies.sort()
    return {
        "alerts_per_s": len(latencies) * n_alerts / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "requests": len(latencies),
        "errors": errors,
    }


async def pg_admin(sql: str) -> None:
    import asyncpg

    dsn = os.environ.get("AUTOHEAL_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def cpu_seconds(pid: int, tid: int | None = None) -> float:
    """User + system CPU the process (or one of its threads) has used so far."""
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="runs per server and scenario, interleaved; medians are printed",
    )
    parser.add_argument("--store", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--replicas", type=int, default=1)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="autoheal-bench-"))
    bare_port = free_port()
    heal_ports = [free_port() for _ in range(args.replicas)]
    dbname = f"autoheal_bench_{uuid.uuid4().hex[:8]}"
    if args.store == "postgresql":
        await pg_admin(f'CREATE DATABASE "{dbname}"')
        database_url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{dbname}"
    else:
        database_url = f"sqlite+aiosqlite:///{tmp}/autoheal.db"
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOHEAL_")}
    base_env.update(
        {
            "AUTOHEAL_DATABASE_URL": database_url,
            "AUTOHEAL_AUTH_TOKEN": TOKEN,
            "AUTOHEAL_LOG_LEVEL": "WARNING",
        }
    )
    bare = subprocess.Popen([sys.executable, "-c", BARE_SERVER, str(bare_port)])
    heals = [
        subprocess.Popen(
            [sys.executable, "-m", "receiver", "serve"],
            env={
                **base_env,
                "AUTOHEAL_LISTEN": f"127.0.0.1:{port}",
                "AUTOHEAL_REPLICA_ID": f"r{i}",
            },
            cwd=ROOT,
        )
        for i, port in enumerate(heal_ports)
    ]
    try:
        await wait_ready(f"http://127.0.0.1:{bare_port}/api/v1/alerts")
        for port in heal_ports:
            await wait_ready(f"http://127.0.0.1:{port}/readyz")
        scenarios = [(1, True), (1, False), (10, True), (10, False)]
        print(
            f"{args.connections} connections, {args.rounds} x {args.seconds:g}s per server and "
            f"scenario (medians; ratio range in brackets), {args.replicas} autoheal "
            f"replica(s) on {args.store}"
        )
        print(
            f"{'scenario':<24}{'server':<10}{'alerts/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
            f"{'errors':>8}{'cpu us/alert':>14}{'loop busy':>11}{'ratio':>8}"
        )
        for n_alerts, unique in scenarios:
            name = f"{n_alerts} alert{'s' if n_alerts > 1 else ''}/req, {'unique' if unique else 'resend'}"
            runs: dict[str, list[dict[str, float]]] = {"bare": [], "autoheal": []}
            servers = {
                "bare": ([bare_port], [bare.pid]),
                "autoheal": (heal_ports, [h.pid for h in heals]),
            }
            for round_no in range(args.rounds):
                # Alternate who goes first, so a drift in the machine's speed hits both alike.
                order = ["bare", "autoheal"] if round_no % 2 == 0 else ["autoheal", "bare"]
                for server in order:
                    ports, pids = servers[server]
                    urls = [f"http://127.0.0.1:{port}/api/v1/alerts" for port in ports]
                    await drive(urls, n_alerts, unique, min(1.0, args.seconds), args.connections)
                    cpu_before = [cpu_seconds(pid) for pid in pids]
                    loop_before = [cpu_seconds(pid, pid) for pid in pids]
                    started = time.monotonic()
                    result = await drive(urls, n_alerts, unique, args.seconds, args.connections)
                    took = time.monotonic() - started
                    alerts = result["requests"] * n_alerts
                    cpu = sum(cpu_seconds(p) - b for p, b in zip(pids, cpu_before, strict=True))
                    result["cpu_us"] = cpu / alerts * 1e6
                    # The event loop's thread: near 1.0, it is what limits the server.
                    result["loop_busy"] = max(
                        (cpu_seconds(p, p) - b) / took
                        for p, b in zip(pids, loop_before, strict=True)
                    )
                    runs[server].append(result)
            ratios = [
                h["alerts_per_s"] / b["alerts_per_s"]
                for h, b in zip(runs["autoheal"], runs["bare"], strict=True)
            ]
            for server in ("bare", "autoheal"):
                r = {
                    key: statistics.median(run[key] for run in runs[server])
                    for key in runs[server][0]
                }
                spread = (
                    f"  ({min(ratios):.2f}-{max(ratios):.2f})"
                    if server == "autoheal" and len(ratios) > 1
                    else ""
                )
                print(
                    f"{name:<24}{server:<10}{r['alerts_per_s']:>10.0f}{r['p50_ms']:>9.2f}"
                    f"{r['p99_ms']:>9.2f}{r['errors']:>8.0f}{r['cpu_us']:>14.0f}"
                    f"{r['loop_busy']:>11.2f}"
                    f"{(f'{statistics.median(ratios):.2f}' if server == 'autoheal' else ''):>8}"
                    f"{spread}"
                )
        rss = ", ".join(f"{peak_rss_mb(h.pid):.1f}" for h in heals)
        print(f"autoheal peak RSS per replica: {rss} MB")
    finally:
        for proc in (bare, *heals):
            proc.terminate()
        for proc in (bare, *heals):
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)
        if args.store == "postgresql":
            await pg_admin(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
