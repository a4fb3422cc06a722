"""Cost growth: ingest rate, claim latency and a /metrics scrape with 1,000,000 incidents
already stored, against the same on an empty store (target: within 20 %).

For each store: a fresh database, measured empty; then history is added (99 % resolved, 1 %
escalated: an escalated incident is a live problem, its alert still firing, and retention
bounds them; written straight to the table), and measured
again. Ingest is measured with bench/ingest.py's closed-loop client against a real
`autoheal serve`; claim latency by timing the worker's own claim (repo.incidents.claim) of 4
among 100 due incidents, 200 times.

    python bench/growth.py [--store sqlite|postgresql] [--history 1000000] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.ingest import TOKEN, drive, free_port, pg_admin, wait_ready  # noqa: E402
from receiver.db import repo  # noqa: E402
from receiver.db.engine import open_database  # noqa: E402
from receiver.db.migrate import upgrade  # noqa: E402

COLUMNS = [
    "dedup_key",
    "source",
    "task_name",
    "error_type",
    "error_message",
    "severity",
    "status",
    "retry_count",
    "occurrences",
    "labels",
    "annotations",
    "escalation_reason",
    "last_seen_at",
    "created_at",
    "updated_at",
    "resolved_at",
    "healed",
]


def history_rows(n: int, start: int):  # type: ignore[no-untyped-def]
    old = datetime.now(UTC) - timedelta(days=30)
    for i in range(start, start + n):
        escalated = i % 100 == 0  # escalated = still a live problem; most history resolved
        at = old + timedelta(seconds=i)
        yield (
            f"am:hist{i}",
            "alertmanager",
            "ContainerDown",
            "OOM",
            f"history {i}",
            "P2",
            "escalated" if escalated else "resolved",
            1,
            1,
            json.dumps({"alertname": "ContainerDown", "container": f"h{i}"}),
            "{}",
            "no_playbook" if escalated else None,
            at,
            at,
            at,
            None if escalated else at,
            None if escalated else True,
        )


async def fill(url: str, store: str, n: int, path: Path | None) -> float:
    started = time.perf_counter()
    chunk = 50_000
    if store == "sqlite":
        import sqlite3

        assert path is not None
        conn = sqlite3.connect(path)
        marks = ", ".join("?" * len(COLUMNS))
        for s in range(0, n, chunk):
            rows = [
                tuple(
                    v.replace(tzinfo=None).isoformat(" ") if isinstance(v, datetime) else v
                    for v in r
                )
                for r in history_rows(min(chunk, n - s), s)
            ]
            conn.executemany(f"INSERT INTO incidents ({', '.join(COLUMNS)}) VALUES ({marks})", rows)
            conn.commit()
        conn.close()
    else:
        import asyncpg

        conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
        try:
            for s in range(0, n, chunk):
                await conn.copy_records_to_table(
                    "incidents", records=list(history_rows(min(chunk, n - s), s)), columns=COLUMNS
                )
            await conn.execute("ANALYZE incidents")
        finally:
            await conn.close()
    return time.perf_counter() - started


async def add_due(url: str) -> None:
    """100 open incidents due now, for the claims to find."""
    from sqlalchemy import insert

    from receiver.db.schema import incidents

    db = open_database(url)
    now = datetime.now(UTC)
    rows = [
        dict(zip(COLUMNS, r, strict=True))
        | {
            "dedup_key": f"due{i}",
            "status": "open",
            "escalation_reason": None,
            "next_attempt_at": now,
            "labels": {},
            "annotations": {},
            "resolved_at": None,
            "healed": None,
        }
        for i, r in enumerate(history_rows(100, 10**9))
    ]
    try:
        async with db.transaction() as conn:
            await conn.execute(insert(incidents), rows)
    finally:
        await db.dispose()


async def claim_latency(url: str) -> float:
    """Median seconds of one claim of 4 (100 due incidents present), as the worker runs it:
    the pick that opens its batch transaction, in a write transaction of its own."""
    db = open_database(url)
    try:
        now = datetime.now(UTC)
        samples = []
        for _ in range(200):
            t0 = time.perf_counter()
            rows = await db.run_in_transaction(repo.incidents.claim, now, 4, short=True)
            samples.append(time.perf_counter() - t0)
            assert len(rows) == 4
        return statistics.median(samples)
    finally:
        await db.dispose()


async def measure(url: str, seconds: float) -> dict[str, float]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOHEAL_")}
    env.update(
        {
            "AUTOHEAL_LISTEN": f"127.0.0.1:{port}",
            "AUTOHEAL_DATABASE_URL": url,
            "AUTOHEAL_AUTH_TOKEN": TOKEN,
            "AUTOHEAL_LOG_LEVEL": "WARNING",
            "AUTOHEAL_WORKER": "false",  # ingest alone: the due incidents stay for the claims
        }
    )
    proc = subprocess.Popen([sys.executable, "-m", "receiver", "serve"], env=env, cwd=ROOT)
    try:
        await wait_ready(f"http://127.0.0.1:{port}/readyz", 60)
        urls = [f"http://127.0.0.1:{port}/api/v1/alerts"]
        await drive(urls, 1, True, 1.0, 32)
        ingest = await drive(urls, 1, True, seconds, 32)
        scrapes = []
        async with aiohttp.ClientSession() as http:
            for _ in range(20):
                t0 = time.perf_counter()
                async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
                    await resp.read()
                scrapes.append(time.perf_counter() - t0)
    finally:
        proc.terminate()
        proc.wait(20)
    return {
        "alerts_per_s": ingest["alerts_per_s"],
        "claim_ms": await claim_latency(url) * 1000,
        "scrape_ms": statistics.median(scrapes) * 1000,
    }


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--history", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=5)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="autoheal-bench-growth-"))
    dbname = f"autoheal_growth_{uuid.uuid4().hex[:8]}"
    path = None
    if args.store == "sqlite":
        path = tmp / "autoheal.db"
        url = f"sqlite+aiosqlite:///{path}"
    else:
        await pg_admin(f'CREATE DATABASE "{dbname}"')
        url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{dbname}"
    try:
        db = open_database(url)
        await upgrade(db)
        await db.dispose()
        await add_due(url)
        empty = await measure(url, args.seconds)
        took = await fill(url, args.store, args.history, path)
        full = await measure(url, args.seconds)
        print(f"{args.store}: {args.history:,} history incidents written in {took:.0f}s")
        print(f"{'':<12}{'ingest alerts/s':>16}{'claim ms':>10}{'scrape ms':>11}")
        for name, r in (("empty", empty), ("history", full)):
            print(
                f"{name:<12}{r['alerts_per_s']:>16.0f}{r['claim_ms']:>10.2f}{r['scrape_ms']:>11.1f}"
            )
        print(
            f"{'ratio':<12}{full['alerts_per_s'] / empty['alerts_per_s']:>16.2f}"
            f"{full['claim_ms'] / empty['claim_ms']:>10.2f}{full['scrape_ms'] / empty['scrape_ms']:>11.2f}"
        )
    finally:
        if args.store == "postgresql":
            await pg_admin(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
