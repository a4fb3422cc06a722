"""The pruner: keeps history to its configured age, in the background, on worker replicas.

Each round, per table, finds the newest row old enough to go (``repo.retention``) and deletes
up to it a batch per transaction, yielding between batches so ingest is never held back for
long. Several replicas pruning at once only share the work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

from receiver.background import repeat, tasks
from receiver.config import Settings
from receiver.db.engine import Database
from receiver.db.repo import retention

log = logging.getLogger(__name__)


class Pruner:
    def __init__(self, settings: Settings, db: Database) -> None:
        self.db = db
        self.interval = settings.retention_interval_seconds
        self.ages = {
            "signals": settings.retention_signals_days,
            "outbox": settings.retention_outbox_days,
            "incidents": settings.retention_incidents_days,
            "task_runs": settings.retention_task_runs_days,
        }

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Pruner]:
        loop = repeat(
            self._round,
            every=self.interval,
            log=log,
            failed="retention: pruning failed; next round retries",
            wait_first=True,
        )
        async with tasks(pruner=loop):
            yield self

    async def _round(self) -> None:
        await self.prune_once()

    async def prune_once(self, now: datetime | None = None) -> dict[str, int]:
        """Delete what is past its age; rows deleted per table."""
        now = now or datetime.now(UTC)
        deleted = {}
        for name, (table, inserted, prune) in retention.TABLES.items():
            days = self.ages[name]
            if not days:
                continue
            cutoff = now - timedelta(days=days)
            async with self.db.reading() as conn:
                upto = await retention.last_id_before(conn, table, inserted, cutoff)
            total = 0
            while upto is not None:
                async with self.db.transaction() as conn:
                    n = await prune(conn, cutoff, upto)
                total += n
                if n < retention.BATCH:
                    break
                await asyncio.sleep(0)  # let ingest have the writer between batches
            deleted[name] = total
            if total:
                log.info("retention: %d %s rows older than %g days deleted", total, name, days)
        return deleted
