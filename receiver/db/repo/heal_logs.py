"""The heal_logs table: one row per attempt (or refusal), pending until it finishes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from receiver.db.schema import heal_logs
from receiver.domain import HealResult


async def add_heal_log(conn: AsyncConnection, **values: Any) -> int:
    values.setdefault("result_output", "")
    values.setdefault("duration_ms", 0)
    result = await conn.execute(heal_logs.insert().values(**values).returning(heal_logs.c.id))
    return int(result.scalar_one())


async def finish_heal_log(conn: AsyncConnection, log_id: int, **values: Any) -> None:
    await conn.execute(update(heal_logs).where(heal_logs.c.id == log_id).values(**values))


async def fail_interrupted(conn: AsyncConnection, incident_id: int, now: datetime) -> int:
    """Pending attempts left by a replica that died mid-heal become failures."""
    result = await conn.execute(
        update(heal_logs)
        .where(
            heal_logs.c.incident_id == incident_id,
            heal_logs.c.result == HealResult.PENDING.value,
        )
        .values(
            result=HealResult.FAILED.value,
            reason="interrupted",
            result_output="attempt interrupted: the worker stopped before it finished",
            finished_at=now,
        )
    )
    return int(result.rowcount)


async def incident_heal_logs(conn: AsyncConnection, incident_id: int) -> list[dict[str, Any]]:
    rows = (
        await conn.execute(
            select(heal_logs)
            .where(heal_logs.c.incident_id == incident_id)
            .order_by(heal_logs.c.created_at, heal_logs.c.id)
        )
    ).all()
    return [dict(r._mapping) for r in rows]
