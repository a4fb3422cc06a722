"""The task watch: declared tasks whose run is missed, or runs longer than their
max_duration, become incidents (MISSED_RUN, RUN_TOO_LONG) like any fault: classified,
matched to playbooks, held by the brakes.

Read from the store every few seconds on each worker replica; each incident's signal has a
key made of the task and the due time (or the run), so replicas that look at once, or a
replica that restarts, store it once.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from receiver.background import repeat, tasks
from receiver.catalog import CatalogHolder
from receiver.db import repo
from receiver.db.engine import Database
from receiver.db.repo.task_runs import Heard
from receiver.domain import ErrorType, RunOutcome, Signal, Source, parse_severity
from receiver.metrics import Metrics
from receiver.tasks import Expected, Task, TaskState, expect

log = logging.getLogger(__name__)

# Runs still open after this long are not looked at (a scheduler that never sends ends).
LOOK_BACK = timedelta(days=7)


class TaskWatch:
    def __init__(
        self,
        db: Database,
        catalog: CatalogHolder,
        submit: Any,  # Ingestor.submit: stores signals as ingest does
        metrics: Metrics | None = None,
        every: float = 5.0,
    ) -> None:
        self.db = db
        self.catalog = catalog
        self.submit = submit
        self.metrics = metrics
        self.every = every

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[TaskWatch]:
        step = repeat(self.check, every=self.every, log=log, failed="task watch failed; retrying")
        async with tasks(**{"task-watch": step}):
            yield self

    async def states(self, now: datetime | None = None) -> list[tuple[Task, Expected, Any]]:
        """Each declared task, where it stands, and what the store says of it."""
        now = now or datetime.now(UTC)
        declared = self.catalog.current.tasks
        if not declared:
            return []
        async with self.db.reading() as conn:
            found = await standing(conn, declared, now)
        # A task without a row was declared by a reload on another replica a moment ago.
        return [(task, state, heard) for task, state, heard in found if state is not None]

    async def check(self, now: datetime | None = None) -> int:
        """Store a signal for each run newly missed or overrunning; how many. Each is
        reported once: a missed run's due time and an overrun run are noted in the store,
        and the next run is expected after the missed one (a repair gets its chance)."""
        now = now or datetime.now(UTC)
        watched = await self.states(now)
        self._gauges(watched)
        signals: list[Signal] = []
        missed_dues: list[tuple[str, datetime]] = []
        overruns: list[tuple[str, str]] = []
        for task, state, heard in watched:
            due = state.due
            if heard.missed_due is not None and heard.missed_due >= due:
                due = task.next_after(heard.missed_due)  # that one was reported
            # A run still going is not a missed one when its length is watched (overrun).
            going = heard.last_outcome == RunOutcome.RUNNING and task.max_duration is not None
            if now > due + task.grace and not going:
                signals.append(missed(task, state.since, due, now))
                missed_dues.append((task.name, due))
            if task.max_duration is not None:
                for run, started, told in heard.unfinished:
                    if not told and now - started > task.max_duration:
                        signals.append(overrun(task, run, started, now))
                        overruns.append((task.name, run))
        if signals:
            await self.submit(signals)
            async with self.db.transaction() as conn:
                await repo.task_runs.reported(conn, missed_dues, overruns, now)
        return len(signals)

    def _gauges(self, watched: list[tuple[Task, Expected, Any]]) -> None:
        if self.metrics is None:
            return
        for task, state, heard in watched:
            # The series exists from the start: the first run is then an increase.
            self.metrics.task_run_seconds.labels(task.name)
            for one in TaskState:
                self.metrics.task_state.labels(task.name, one.value).set(state.state == one)
            if heard.last_success is not None:
                seen = heard.last_success.timestamp()
                self.metrics.task_last_success.labels(task.name).set(seen)


async def standing(
    conn: AsyncConnection, declared: Sequence[Task], now: datetime
) -> list[tuple[Task, Expected | None, Heard | None]]:
    """Each declared task, where it stands at ``now`` and what the store says of it (both
    None for one the store does not know yet): the watch, ``autoheal tasks`` and the page
    read the same."""
    heard = await repo.task_runs.heard(conn, [t.name for t in declared], now, LOOK_BACK)
    found: list[tuple[Task, Expected | None, Heard | None]] = []
    for task in declared:
        h = heard.get(task.name)
        if h is None:
            found.append((task, None, None))
            continue
        since = h.unfinished[-1][1] if h.unfinished else None  # the latest open run
        found.append((task, expect(task, h.last_ping, h.declared_at, since, now), h))
    return found


def missed(task: Task, since: datetime, due: datetime, now: datetime) -> Signal:
    late = int((now - due).total_seconds() // 60)
    return _signal(
        task,
        ErrorType.MISSED_RUN,
        f"missed:{task.name}:{due.isoformat()}",
        f"{task.name}: no run since {since.isoformat()}; the run due at "
        f"{due.astimezone(task.zone).isoformat()} ({task.describe()}) has not started "
        f"{late} min later (grace {task.grace.total_seconds() / 60:g} min)",
    )


def overrun(task: Task, run: str, started: datetime, now: datetime) -> Signal:
    assert task.max_duration is not None
    took = int((now - started).total_seconds() // 60)
    return _signal(
        task,
        ErrorType.RUN_TOO_LONG,
        f"overrun:{task.name}:{run}",
        f"{task.name}: run {run} started {started.isoformat()} is still running after "
        f"{took} min (max_duration {task.max_duration.total_seconds() / 60:g} min)",
    )


def _signal(task: Task, error_type: ErrorType, key: str, message: str) -> Signal:
    return Signal(
        source=Source.SCHEDULER,
        idempotency_key=key[:300],
        # One incident per task and fault while it is open: the next due time missed too
        # counts as an occurrence of it.
        incident_key=f"task:{task.name}:{error_type.value}",
        firing=True,
        task_name=task.name,
        error_type=error_type,
        severity=parse_severity(task.severity or "P2"),
        message=message,
        labels={**task.labels, "task": task.name},
    )


__all__ = ["TaskState", "TaskWatch"]
