"""The task_runs table: a scheduler's runs of its tasks, from its start, success and failure
reports. Each report is idempotent by (task, run): a resent one changes nothing."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, and_, update

from receiver.db.repo._sql import insert_into
from receiver.db.schema import task_runs
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
