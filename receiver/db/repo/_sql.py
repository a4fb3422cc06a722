"""What every repository module shares: the dialect's INSERT, status groups, leases."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, text, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from receiver.domain import ACTIVE_STATUSES, UNRESOLVED_STATUSES

ACTIVE = [s.value for s in ACTIVE_STATUSES]
RESOLVABLE = [s.value for s in UNRESOLVED_STATUSES]


def dialect_name(conn: AsyncConnection | Connection) -> str:
    return conn.dialect.name


def dialect_insert(dialect: str) -> Callable[[Any], Any]:
    """The dialect's INSERT, which knows ON CONFLICT (both spell it the same).

    The PostgreSQL module is imported only when used: the embedded default never loads it.
    """
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert
    return sqlite.insert


def insert_into(conn: AsyncConnection | Connection, table: Any) -> Any:
    return dialect_insert(dialect_name(conn))(table)


async def lease_rows(
    conn: AsyncConnection,
    table: Any,
    due: Any,
    order_by: Any,
    free: Any,
    *,
    owner: str,
    until: datetime,
    limit: int,
    returning: Sequence[Any],
) -> list[Any]:
    """Claim up to ``limit`` rows meeting ``due`` (first by ``order_by``) whose lease is
    ``free``: pick them (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so replicas pick apart),
    then take them with a conditional UPDATE, so a row another claimer took in between is
    left out. Returns the ``returning`` columns of the rows taken."""
    pick = select(table.c.id).where(due, free).order_by(order_by).limit(limit)
    if dialect_name(conn) == "postgresql":
        pick = pick.with_for_update(skip_locked=True)
    ids = [r[0] for r in (await conn.execute(pick)).all()]
    if not ids:
        return []
    result = await conn.execute(
        update(table)
        .where(table.c.id.in_(ids), free)
        .values(lease_owner=owner, lease_until=until)
        .returning(*returning)
    )
    return list(result.all())


def write_probe(conn: Connection) -> None:
    """A write that changes nothing but still needs the store to take a page (SQLite appends
    it to the WAL): whether writes go through, for readiness."""
    conn.execute(text("UPDATE alembic_version SET version_num = version_num"))
