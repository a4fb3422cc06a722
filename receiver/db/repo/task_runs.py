"""The task_runs and tasks tables: a scheduler's runs of its tasks, from its start, success
and failure reports (each idempotent by (task, run): a resent one changes nothing), and since
when each declared task is expected."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from receiver.db.repo._sql import insert_into
from receiver.db.schema import task_runs, tasks
from receiver.domain import RunOutcome


def started(conn: Connection, task: str, run: str, at: datetime) -> bool:
    """A run started; True unless this start was already stored. A finish that came first
    (reports from two processes) is given its start."""
    insert = insert_into(conn, task_runs).values(
        task=task, run=run, started_at=at, outcome=RunOutcome.RUNNING.value
    )
    stmt = insert.on_conflict_do_update(
        index_elements=["task", "run"],
        set_={"started_at": at},
        where=task_runs.c.started_at.is_(None),
    )
    return bool(conn.execute(stmt).rowcount)


def finished(
    conn: Connection, task: str, run: str, at: datetime, outcome: RunOutcome
) -> tuple[bool, float | None]:
    """A run ended: whether this report was new, and how long the run took (None without
    its start)."""
    ended = conn.execute(
        update(task_runs)
        .where(
            and_(task_runs.c.task == task, task_runs.c.run == run),
            task_runs.c.finished_at.is_(None),
        )
        .values(finished_at=at, outcome=outcome.value)
        .returning(task_runs.c.started_at)
    ).first()
    if ended is not None:
        began = ended.started_at
        return True, (max((at - began).total_seconds(), 0.0) if began is not None else None)
    fresh = conn.execute(
        insert_into(conn, task_runs)
        .values(task=task, run=run, finished_at=at, outcome=outcome.value)
        .on_conflict_do_nothing(index_elements=["task", "run"])
    )
    return bool(fresh.rowcount), None


async def declare(conn: AsyncConnection, names: Sequence[str], now: datetime) -> None:
    """The declared tasks, each expected from the first time any replica loaded it."""
    if not names:
        return
    stmt = insert_into(conn, tasks).values([{"name": n, "declared_at": now} for n in names])
    await conn.execute(stmt.on_conflict_do_nothing(index_elements=["name"]))


@dataclass(frozen=True, slots=True)
class Heard:
    """What the store says of one declared task."""

    declared_at: datetime
    missed_due: datetime | None  # the due time last reported missed
    last_ping: datetime | None  # its latest start or end
    last_success: datetime | None
    last_outcome: str | None
    unfinished: tuple[tuple[str, datetime, bool], ...]  # (run, started_at, overrun reported)


async def heard(
    conn: AsyncConnection, names: Sequence[str], now: datetime, look_back: timedelta
) -> dict[str, Heard]:
    """Per declared task: since when, its latest ping, and its runs still open that started
    within ``look_back``. A few indexed lookups per task (tens of tasks, every few seconds)."""
    declared = {
        r.name: r
        for r in await conn.execute(
            select(tasks.c.name, tasks.c.declared_at, tasks.c.missed_due).where(
                tasks.c.name.in_(names)
            )
        )
    }
    found: dict[str, Heard] = {}
    for name in names:
        if name not in declared:
            continue
        started = await _latest(conn, name, task_runs.c.started_at)
        ended = await _latest(conn, name, task_runs.c.finished_at)
        success = await _latest(
            conn, name, task_runs.c.finished_at, task_runs.c.outcome == RunOutcome.SUCCESS.value
        )
        open_runs = (
            await conn.execute(
                select(task_runs.c.run, task_runs.c.started_at, task_runs.c.overrun_at)
                .where(
                    task_runs.c.task == name,
                    task_runs.c.started_at >= now - look_back,
                    task_runs.c.finished_at.is_(None),
                )
                .order_by(task_runs.c.started_at)
            )
        ).all()
        last = max((t for t in (started[0], ended[0]) if t is not None), default=None)
        # The latest run's outcome: its end, unless a start came after it (running).
        outcome = ended[1] if ended[0] is not None and ended[0] == last else None
        if outcome is None and started[0] is not None:
            outcome = RunOutcome.RUNNING.value
        found[name] = Heard(
            declared[name].declared_at,
            declared[name].missed_due,
            last,
            success[0],
            outcome,
            tuple((r.run, r.started_at, r.overrun_at is not None) for r in open_runs),
        )
    return found


async def _latest(
    conn: AsyncConnection, name: str, column: Any, *where: Any
) -> tuple[datetime | None, str | None]:
    row = (
        await conn.execute(
            select(column, task_runs.c.outcome)
            .where(task_runs.c.task == name, column.is_not(None), *where)
            .order_by(column.desc())
            .limit(1)
        )
    ).first()
    return (row[0], row[1]) if row is not None else (None, None)


async def reported(
    conn: AsyncConnection,
    missed: Sequence[tuple[str, datetime]],
    overrun: Sequence[tuple[str, str]],
    now: datetime,
) -> None:
    """Note what the task watch stored: missed due times (task, due) and overrunning runs
    (task, run), so each is reported once, whichever replica looks next."""
    for name, due in missed:
        await conn.execute(
            update(tasks)
            .where(
                tasks.c.name == name, or_(tasks.c.missed_due.is_(None), tasks.c.missed_due < due)
            )
            .values(missed_due=due)
        )
    for name, run in overrun:
        await conn.execute(
            update(task_runs)
            .where(
                task_runs.c.task == name, task_runs.c.run == run, task_runs.c.overrun_at.is_(None)
            )
            .values(overrun_at=now)
        )
