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
import itertools
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable
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
    """``count`` incidents over 90 days, and the outbox's 7 days of notices (each filled
    only when missing, so a kept store is reused as it is)."""
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        have = conn.scalar(select(func.count()).select_from(incidents)) or 0
        notices = conn.scalar(select(func.count()).select_from(outbox)) or 0
    start = datetime.now(UTC) - timedelta(days=90)
    step = timedelta(days=90) / count
    began = time.perf_counter()
    if have >= count:
        print(f"store has {have} incidents already")
    else:
        rng = random.Random(7)
        rows = (_incident(i, start + step * i, rng.choice(STATUSES)) for i in range(have, count))
        added = insert_batched(engine, incidents, rows)
        print(f"filled {added} incidents in {time.perf_counter() - began:.0f} s")
    if not notices:
        first = max(1, count - int(timedelta(days=7) / step))
        rows = (_notice(i, start + step * (i - 1)) for i in range(first, count + 1))
        print(f"outbox: {insert_batched(engine, outbox, rows)} notices")
    engine.dispose()


def insert_batched(engine: Any, table: Any, rows: Iterable[dict[str, Any]]) -> int:
    """Plain multi-row INSERTs, 5,000 rows a transaction; the rows written."""
    written, rows = 0, iter(rows)
    while batch := list(itertools.islice(rows, 5000)):
        with engine.begin() as conn:
            conn.execute(insert(table), batch)
        written += len(batch)
    return written


def _incident(i: int, at: datetime, status: str) -> dict[str, Any]:
    return {
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


def _notice(incident_id: int, at: datetime) -> dict[str, Any]:
    """A sent escalation notice, as the outbox keeps it."""
    return {
        "channel": "telegram",
        "event": "escalated",
        "incident_id": incident_id,
        "payload": {"text": f"Incident {incident_id} escalated: alert {incident_id}"},
        "status": "sent",
        "attempts": 1,
        "next_attempt_at": at,
        "sent_at": at,
        "created_at": at,
    }


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
