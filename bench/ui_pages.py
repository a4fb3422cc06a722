"""How the /ui pages fare with a big store: N incidents (default 1,000,000) in SQLite, then
each page asked 20 times; the median beside /healthz's (a handler that reads nothing), as a
ratio, so the figure means the same on a busy machine.

    python bench/ui_pages.py [--incidents 1000000] [--runs 20] [--keep DIR]

The store is built with plain multi-row INSERTs (about a minute per million rows); --keep
reuses one built before. Each incident of the last 7 days (the outbox's retention) also gets
a sent notice, as an escalation does, so the timeline reads its notices from a full outbox.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from sqlalchemy import create_engine, func, insert, select

from receiver.app import create_app
from receiver.config import load_settings
from receiver.db.schema import incidents, outbox

STATUSES = ["resolved"] * 90 + ["escalated"] * 8 + ["open", "awaiting_approval"]
TYPES = ["DNS_FAIL", "DB_UNREACHABLE", "OOM", "SSL_FAIL", "TIMEOUT", "DISK_FULL", "UNKNOWN"]


def fill(path: Path, count: int) -> None:
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        have = conn.scalar(select(func.count()).select_from(incidents)) or 0
    if have >= count:
        print(f"store has {have} incidents already")
        return
    rng = random.Random(7)
    start = datetime.now(UTC) - timedelta(days=90)
    step = timedelta(days=90) / count
    began = time.perf_counter()
    batch = []
    for i in range(have, count):
        at = start + step * i
        status = rng.choice(STATUSES)
        batch.append(
            {
                "dedup_key": None,
                "source": "alertmanager",
                "task_name": f"Alert{i % 50}",
                "error_type": TYPES[i % len(TYPES)],
                "error_message": f"alert {i} on app-{i % 1000}",
                "severity": "P2",
                "status": status,
                "escalation_reason": "no_playbook" if status == "escalated" else None,
                "retry_count": 0,
                "occurrences": 1,
                "target": f"local/app-{i % 1000}",
                "labels": {"alertname": f"Alert{i % 50}", "container": f"app-{i % 1000}"},
                "annotations": {},
                "created_at": at,
                "updated_at": at,
                "last_seen_at": at,
            }
        )
        if len(batch) == 5000:
            with engine.begin() as conn:
                conn.execute(insert(incidents), batch)
            batch.clear()
    if batch:
        with engine.begin() as conn:
            conn.execute(insert(incidents), batch)
    fill_outbox(engine, count, start, step)
    engine.dispose()
    print(f"filled {count - have} incidents in {time.perf_counter() - began:.0f} s")


def fill_outbox(engine: Any, count: int, start: datetime, step: timedelta) -> None:
    """A sent notice for every incident of the last 7 days (what the outbox keeps)."""
    first = max(1, count - int(timedelta(days=7) / step))
    rows = []
    for i in range(first, count + 1):
        at = start + step * (i - 1)
        rows.append(
            {
                "channel": "telegram",
                "event": "escalated",
                "incident_id": i,
                "payload": {"text": f"Incident {i} escalated: alert {i} on app-{i % 1000}"},
                "status": "sent",
                "attempts": 1,
                "next_attempt_at": at,
                "sent_at": at,
                "created_at": at,
            }
        )
        if len(rows) == 5000:
            with engine.begin() as conn:
                conn.execute(insert(outbox), rows)
            rows.clear()
    if rows:
        with engine.begin() as conn:
            conn.execute(insert(outbox), rows)
    print(f"outbox: {count - first + 1} notices")


async def measure(path: Path, runs: int, count: int) -> None:
    settings = load_settings(
        None,
        database_url=f"sqlite+aiosqlite:///{path}",
        worker=False,
        docker_url=None,
        listen="127.0.0.1:9095",
    )
    server = TestServer(create_app(settings), host="127.0.0.1")
    await server.start_server()
    pages = {
        "/healthz (baseline)": "/healthz",
        "incidents, first page": "/ui/incidents",
        "incidents, deep page": f"/ui/incidents?before={count // 2}",
        "status=awaiting_approval": "/ui/incidents?status=awaiting_approval",
        "status=escalated, OOM": "/ui/incidents?status=escalated&error_type=OOM",
        "status=escalated, deep": f"/ui/incidents?status=escalated&before={count // 2}",
        "target=local/app-7": "/ui/incidents?target=local%2Fapp-7",
        "last hour": "/ui/incidents?since_hours=1",
        "one incident": f"/ui/incidents/{count // 3}",
        "one recent incident": f"/ui/incidents/{count - 100}",
    }
    try:
        async with ClientSession(str(server.make_url(""))) as http:
            medians = {}
            for name, url in pages.items():
                times = []
                for _ in range(runs):
                    began = time.perf_counter()
                    async with http.get(url) as answer:
                        await answer.read()
                        assert answer.status == 200, (url, answer.status)
                    times.append(time.perf_counter() - began)
                medians[name] = statistics.median(times)
    finally:
        await server.close()
    base = medians["/healthz (baseline)"]
    print(f"{count:,} incidents in SQLite; median of {runs} requests each")
    for name, seconds in medians.items():
        print(f"  {name:<28} {seconds * 1000:8.2f} ms   {seconds / base:7.1f} x /healthz")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--incidents", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--keep", type=Path, help="a directory to keep (and reuse) the store in")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="autoheal-bench-ui-"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "autoheal.db"
    from receiver.db.engine import open_database
    from receiver.db.migrate import upgrade

    async def migrate() -> None:
        db = open_database(f"sqlite+aiosqlite:///{path}")
        try:
            await upgrade(db)
        finally:
            await db.dispose()

    asyncio.run(migrate())
    fill(path, args.incidents)
    asyncio.run(measure(path, args.runs, args.incidents))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
