"""What every repository module shares: the dialect's INSERT and status groups."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from receiver.domain import ACTIVE_STATUSES, IncidentStatus

ACTIVE = [s.value for s in ACTIVE_STATUSES]
RESOLVABLE = [*ACTIVE, IncidentStatus.ESCALATED.value]


def dialect_name(conn: AsyncConnection) -> str:
    return conn.dialect.name


def dialect_insert(dialect: str) -> Callable[[Any], Any]:
    """The dialect's INSERT, which knows ON CONFLICT (both spell it the same).

    The PostgreSQL module is imported only when used: the embedded default never loads it.
    """
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert
    return sqlite.insert


def insert_into(conn: AsyncConnection, table: Any) -> Any:
    return dialect_insert(dialect_name(conn))(table)
