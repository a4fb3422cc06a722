"""The heal worker's loop: claim due incidents with a lease, run one step each, concurrently.

All state lives in the incidents row (status, deadlines, lease); this process only holds a
lease while it works, so another replica (or this one after a restart) resumes where it stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

from receiver.catalog import CatalogHolder
from receiver.config import Settings
from receiver.db import repo
from receiver.db.engine import Database
from receiver.metrics import Metrics
from receiver.notify import notify_scope
from receiver.resources import Resources
from receiver.worker.context import StepContext, now
from receiver.worker.step import step

log = logging.getLogger(__name__)


class HealWorker:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        catalog: CatalogHolder,
        metrics: Metrics,
        resources: Resources | None = None,
        on_escalated: Callable[[], None] = lambda: None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.catalog = catalog
        # Names this replica in leases and heal logs: unique per process, readable by people.
        self.owner = settings.replica_id or f"{socket.gethostname()}-{os.getpid()}"
        self.ctx = StepContext(
            settings,
            db,
            metrics,
            self.owner,
            resources,
            settings.param_scope(),
            notify_scope(settings),
            on_escalated,
        )
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(settings.worker_concurrency)
        self._inflight: set[asyncio.Task[None]] = set()
        self._lease = timedelta(seconds=settings.lease_seconds)

    def wake(self) -> None:
        """New work was committed: look now rather than at the next poll."""
        self._wake.set()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[HealWorker]:
        task = asyncio.create_task(self._loop(), name="autoheal-worker")
        try:
            yield self
        finally:
            task.cancel()
            for t in list(self._inflight):
                t.cancel()
            await asyncio.gather(task, *self._inflight, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            try:
                claimed = await self.poll_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("worker poll failed; retrying")
                claimed = 0
            if claimed:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.worker_poll_seconds)
            self._wake.clear()

    async def poll_once(self) -> int:
        """Claim what is due (as many as there are free slots) and start a step for each."""
        free = self.settings.worker_concurrency - len(self._inflight)
        if free <= 0:
            return 0
        at = now()
        # Look before taking the write lock: most wake-ups find nothing due.
        async with self.db.reading() as conn:
            due = await repo.next_due(conn)
        if due is None or due > at:
            return 0
        async with self.db.transaction() as conn:
            ids = await repo.claim(conn, self.owner, at, self._lease, free)
        self.ctx.metrics.claims.inc(len(ids))
        for incident_id in ids:
            task = asyncio.create_task(self._guarded_step(incident_id))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
        return len(ids)

    async def drain(self, within: float = 30) -> None:
        """Run until nothing is due now (tests)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            claimed = await self.poll_once()
            if self._inflight:
                await asyncio.gather(*self._inflight, return_exceptions=True)
            elif not claimed:
                return
        raise TimeoutError("worker did not drain")

    async def _guarded_step(self, incident_id: int) -> None:
        async with self._slots:
            try:
                await step(self.ctx, self.catalog.current, incident_id)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception(
                    "incident %s: step failed; lease will expire and it is retried", incident_id
                )
                return
        self.wake()
