"""Retention: delete history past its age, in small batches, without scanning it.

Rows are inserted in time order, so a table's id grows with its insert time: the newest row
old enough to go is found by a binary search over the primary key (a few point reads), and
deletes run over id ranges below it, a batch at a time. No index on the time columns is
needed (ingest pays for every index), and the cost does not grow with the table.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from receiver.db.schema import heal_logs, incidents, outbox, signals, task_runs
from receiver.domain import IncidentStatus, OutboxState

BATCH = 1000
_ENDED = [IncidentStatus.RESOLVED.value, IncidentStatus.ESCALATED.value]


async def last_id_before(
    conn: AsyncConnection, table: Any, inserted: Any, cutoff: datetime
) -> int | None:
    """The highest id whose insert time is before ``cutoff`` (binary search on the key)."""
    # Two queries: SQLite answers a lone min() or max() from the key's ends, but one
    # SELECT of both reads the whole table (120 ms at a million incidents).
    low = await conn.scalar(select(func.min(table.c.id)))
    high = await conn.scalar(select(func.max(table.c.id)))
    if low is None or high is None:
        return None

    async def time_at(row_id: int) -> datetime | None:
        value: datetime | None = await conn.scalar(
            select(inserted).where(table.c.id >= row_id).order_by(table.c.id).limit(1)
        )
        return value

    first = await time_at(low)
    if first is None or first >= cutoff:
        return None
    while low < high:  # invariant: the row at (or after) low is older than cutoff
        mid = (low + high + 1) // 2
        at = await time_at(mid)
        if at is not None and at < cutoff:
            low = mid
        else:
            high = mid - 1
    return int(low)


async def _delete_batch(conn: AsyncConnection, table: Any, where: Any) -> int:
    ids = select(table.c.id).where(where).order_by(table.c.id).limit(BATCH).scalar_subquery()
    result = await conn.execute(delete(table).where(table.c.id.in_(ids)))
    return int(result.rowcount)


async def prune_signals(conn: AsyncConnection, cutoff: datetime, upto: int) -> int:
    """One batch of signals received, and last resent, before ``cutoff`` (ids <= upto)."""
    return await _delete_batch(
        conn, signals, and_(signals.c.id <= upto, signals.c.last_received_at < cutoff)
    )


async def prune_outbox(conn: AsyncConnection, cutoff: datetime, upto: int) -> int:
    """One batch of delivered or failed notifications (pending ones always stay)."""
    return await _delete_batch(
        conn,
        outbox,
        and_(
            outbox.c.id <= upto,
            outbox.c.status != OutboxState.PENDING.value,
            outbox.c.created_at < cutoff,
        ),
    )


async def prune_incidents(conn: AsyncConnection, cutoff: datetime, upto: int) -> int:
    """One batch of incidents that ended (resolved or escalated) and have not changed since
    ``cutoff``, with their heal logs. Active incidents always stay."""
    ended = (
        select(incidents.c.id)
        .where(
            incidents.c.id <= upto,
            incidents.c.status.in_(_ENDED),
            incidents.c.updated_at < cutoff,
        )
        .order_by(incidents.c.id)
        .limit(BATCH)
    )
    ids = [r[0] for r in (await conn.execute(ended)).all()]
    if not ids:
        return 0
    await conn.execute(delete(heal_logs).where(heal_logs.c.incident_id.in_(ids)))
    result = await conn.execute(delete(incidents).where(incidents.c.id.in_(ids)))
    return int(result.rowcount)


async def prune_task_runs(conn: AsyncConnection, cutoff: datetime, upto: int) -> int:
    """One batch of a scheduler's runs that ended (or started and never ended) before
    ``cutoff``; each task's latest run stays, its last ping."""
    latest = select(func.max(task_runs.c.id)).group_by(task_runs.c.task)
    return await _delete_batch(
        conn,
        task_runs,
        and_(
            task_runs.c.id <= upto,
            func.coalesce(task_runs.c.finished_at, task_runs.c.started_at) < cutoff,
            task_runs.c.id.not_in(latest),
        ),
    )


TABLES = {
    "signals": (signals, signals.c.received_at, prune_signals),
    "outbox": (outbox, outbox.c.created_at, prune_outbox),
    "incidents": (incidents, incidents.c.created_at, prune_incidents),
    "task_runs": (
        task_runs,
        func.coalesce(task_runs.c.started_at, task_runs.c.finished_at),
        prune_task_runs,
    ),
}
