"""The pause row (at most one): while it is there, and until its expiry if it has one, no
action starts on any replica. Every replica reads it where it decides (``current``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from receiver.db.repo._sql import insert_into
from receiver.db.schema import heal_logs, incidents, pause
from receiver.domain import IncidentStatus, LogReason, Paused

_ROW = 1
_CURRENT = select(pause.c.reason, pause.c.paused_by, pause.c.paused_at, pause.c.until).where(
    pause.c.id == _ROW
)


def _paused(row: Any, now: datetime) -> Paused | None:
    if row is None:
        return None
    if row.until is not None and row.until <= now:
        return None  # expired: as good as resumed
    return Paused(row.reason, row.paused_by, row.paused_at, row.until)


def current(conn: Connection, now: datetime) -> Paused | None:
    """The pause in force now, if any."""
    return _paused(conn.execute(_CURRENT).first(), now)


async def read(conn: AsyncConnection, now: datetime) -> Paused | None:
    return _paused((await conn.execute(_CURRENT)).first(), now)


async def pause_all(
    conn: AsyncConnection, reason: str, by: str, now: datetime, until: datetime | None
) -> Paused:
    """Pause (or change the pause in force: its reason, who, and expiry)."""
    await conn.execute(delete(pause))
    values = {"id": _ROW, "reason": reason, "paused_by": by, "paused_at": now, "until": until}
    await conn.execute(insert_into(conn, pause).values(**values))
    return Paused(reason, by, now, until)


async def resume(conn: AsyncConnection, now: datetime) -> tuple[Paused | None, int]:
    """End the pause. The incidents it held back are due at once (not at the recheck the
    pause gave them); returns the pause that was in force and how many incidents woke."""
    row = (await conn.execute(_CURRENT)).first()
    if row is None:
        return None, 0
    await conn.execute(delete(pause))
    held = select(heal_logs.c.incident_id).where(
        heal_logs.c.reason == LogReason.PAUSED.value, heal_logs.c.created_at >= row.paused_at
    )
    woke = await conn.execute(
        update(incidents)
        .where(
            and_(
                incidents.c.status == IncidentStatus.OPEN.value,
                incidents.c.next_attempt_at > now,
                incidents.c.id.in_(held),
            )
        )
        .values(next_attempt_at=now)
    )
    return _paused(row, now), int(woke.rowcount)
