"""Failed logins by client address, shared by replicas (``receiver.lockout`` decides what
they mean). Only the window's worth is ever kept: each failure deletes those older."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, bindparam, delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from receiver.db.repo._sql import insert_into
from receiver.db.schema import login_failures

# A locked-out address adds no more rows, so an address has few (the limit, plus one per
# other replica at most); the bound only keeps a misconfiguration from reading many.
_RECENT = (
    select(login_failures.c.at)
    .where(
        and_(
            login_failures.c.address == bindparam("address"),
            login_failures.c.at >= bindparam("since"),
        )
    )
    .order_by(login_failures.c.at)
    .limit(10_000)
)


async def recent(conn: AsyncConnection, address: str, since: datetime) -> list[datetime]:
    """When this address's failures since ``since`` were, oldest first."""
    return list((await conn.scalars(_RECENT, {"address": address, "since": since})).all())


async def record(
    conn: AsyncConnection, address: str, via: str, now: datetime, since: datetime
) -> list[datetime]:
    """Add a failure and forget everyone's failures before ``since``; then this address's
    failures in the window, this one included, oldest first."""
    await conn.execute(delete(login_failures).where(login_failures.c.at < since))
    await conn.execute(insert_into(conn, login_failures).values(address=address, via=via, at=now))
    return await recent(conn, address, since)
