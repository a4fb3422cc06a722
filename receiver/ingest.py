"""Group commit: concurrent requests share one transaction, each answered after it commits.

One SQLite commit per webhook caps ingest near the disk's fsync rate; a single writer task that
drains whatever queued while the previous commit ran keeps every acknowledgement durable and
pays one commit per batch instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Connection
from sqlalchemy.exc import DataError, DBAPIError, SQLAlchemyError, StatementError

from receiver.background import tasks
from receiver.catalog import CatalogHolder
from receiver.db import repo
from receiver.db.engine import SHORT_ROWS, Database
from receiver.domain import EscalationReason, ResolveKind, Signal, Source
from receiver.effects import Effects
from receiver.errors import StoreUnavailable, Unstorable
from receiver.metrics import Metrics
from receiver.notify.notices import Announcer
from receiver.playbooks import candidates, explain_no_match
from receiver.worker.writes import Writes

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Pending:
    signals: Sequence[Signal]
    done: asyncio.Future[list[int | None]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


def _fail(item: _Pending, exc: Exception) -> None:
    if not item.done.done():  # a request already gone has nobody to tell
        item.done.set_exception(exc)


class Ingestor:
    """Owns the writer task. ``submit`` returns once the signals are committed."""

    def __init__(
        self,
        db: Database,
        metrics: Metrics,
        catalog: CatalogHolder,
        *,
        max_batch: int = 512,
        on_commit: Callable[[], None] | None = None,
        notify: Announcer | None = None,
        on_escalated: Callable[[], None] | None = None,
    ) -> None:
        self._db = db
        self._metrics = metrics
        self._catalog = catalog
        self._max_batch = max_batch
        self._on_commit = on_commit
        self._notify = notify
        self._on_escalated = on_escalated
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def submit(self, signals: Sequence[Signal]) -> list[int | None]:
        """Store the signals durably; returns each signal's incident id (None: no incident).

        Raises StoreUnavailable when the store cannot take them (answer 503, let the sender retry).
        """
        if self._task is None or self._task.done():
            raise StoreUnavailable("ingest writer is not running")
        pending = _Pending(signals)
        await self._queue.put(pending)
        # If the request is cancelled (client gone), the writer still stores the signals; it
        # skips answering a future nobody waits for.
        return await pending.done

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Ingestor]:
        try:
            async with tasks(ingest=self._run()) as started:
                self._task = started["ingest"]
                yield self
        finally:
            while not self._queue.empty():
                _fail(self._queue.get_nowait(), StoreUnavailable("shutting down"))

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            count = len(batch[0].signals)
            # Requests already read from their sockets but not yet parsed join in a few loop
            # turns: a commit costs about the same for 1 alert as for 30, so fewer, larger
            # batches leave more CPU for requests. Stop as soon as a turn brings nothing.
            for rounds in range(8):
                grew = False
                while count < self._max_batch and not self._queue.empty():
                    item = self._queue.get_nowait()
                    batch.append(item)
                    count += len(item.signals)
                    grew = True
                if (rounds and not grew) or count >= self._max_batch:
                    break
                await asyncio.sleep(0)
            try:
                await self._write(batch)
            except asyncio.CancelledError:
                for item in batch:
                    _fail(item, StoreUnavailable("shutting down"))
                raise

    async def _write(self, batch: list[_Pending]) -> None:
        try:
            ids = await self._commit([s for item in batch for s in item.signals])
        except Exception as exc:
            if len(batch) > 1:
                # One request's rows must not fail its neighbours': retry them one by one.
                for item in batch:
                    await self._write([item])
                return
            _fail(batch[0], self._refusal(exc))
            return
        for item in batch:
            if not item.done.done():
                item.done.set_result([ids.get(s.incident_key) for s in item.signals])

    @staticmethod
    def _refusal(exc: Exception) -> Exception:
        """What one request's failed write means to its sender."""
        # A value the driver could not bind (StatementError around a Python error) or the
        # database refused as data (DataError: out of range, bad text) is the request's own.
        request_fault = isinstance(exc, DataError) or (
            isinstance(exc, StatementError) and not isinstance(exc, DBAPIError)
        )
        if isinstance(exc, SQLAlchemyError | OSError) and not request_fault:
            # The store's trouble (down, locked, full): a retry later may succeed.
            log.warning("store refused a write: %s", type(exc).__name__)
            return StoreUnavailable(type(exc).__name__)
        # Anything else comes from the request's own values: it fails the same way every time.
        log.warning("a request could not be stored: %s: %s", type(exc).__name__, exc)
        return Unstorable(type(exc).__name__)

    async def _commit(self, signals: list[Signal]) -> dict[str, int]:
        catalog = self._catalog.current
        playbooks = catalog.playbooks
        # Firing signals no playbook matches, with what would have made one match (stored
        # on the incident, told to people when it is escalated).
        unmatched: dict[str, str] = {}
        for s in signals:
            # Once per incident key: a batch of resends repeats the same few.
            if s.firing and s.incident_key not in unmatched and not candidates(playbooks, s):
                unmatched[s.incident_key] = explain_no_match(playbooks, s, catalog.classifier)
        plan = repo.plan_ingest(self._db.sync_dialect, signals, datetime.now(UTC), unmatched)
        outcome, effects = await self._db.run_in_transaction(
            _ingest, plan, self._notify, short=len(signals) <= SHORT_ROWS
        )
        m = self._metrics
        m.ingest_batch.observe(len(signals))
        for (source, status), count in Counter(
            (s.source.value, "firing" if s.firing else "resolved") for s in signals
        ).items():
            m.signals.labels(source, status).inc(count)
        # One update per label set and batch (a storm of new alerts opens hundreds at once).
        for error_type, count in Counter(error_type for _, error_type, _ in outcome.opened).items():
            m.incidents_opened.labels(error_type).inc(count)
        effects.apply(m, catalog.names)
        if effects.escalated and self._on_escalated is not None:
            self._on_escalated()
        # Resends change nothing the worker acts on; new incidents and scheduler reports
        # (a failure during verification) do.
        if self._on_commit is not None and (
            any(not no_playbook for _, _, no_playbook in outcome.opened)
            or any(s.source is Source.SCHEDULER for s in signals)
        ):
            self._on_commit()
        return outcome.incident_ids


def _ingest(
    conn: Connection, plan: repo.IngestPlan, announce: Announcer | None
) -> tuple[repo.IngestOutcome, Effects]:
    """The batch's rows, then what its outcomes imply, written as the worker writes them:
    an alert's resolve is knowledge and news like a quiet window's, an incident opened
    without a playbook is an escalation like any other. In this transaction: a crash after
    the commit still delivers the notices."""
    outcome = repo.ingest(conn, plan)
    w = Writes("", plan.now, announce)
    for incident_id, error_type, _ in outcome.opened:
        w.effects.tell("opened", incident_id, error_type=error_type)
    unmatched = [incident_id for incident_id, _, no_playbook in outcome.opened if no_playbook]
    w.escalated(EscalationReason.NO_PLAYBOOK, unmatched)
    w.resolved(ResolveKind.ALERT_RESOLVED, outcome.resolved)
    w.flush(conn)
    return outcome, w.effects
