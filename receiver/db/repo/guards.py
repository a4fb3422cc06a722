"""Guard rows held in the store so they hold across replicas: cooldowns, target locks, the
global action budget."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from receiver.db.repo._sql import insert_into
from receiver.db.schema import action_budget, cooldowns, target_locks


async def take_cooldown(
    conn: AsyncConnection,
    playbook_id: int,
    target: str,
    incident_id: int,
    cooldown: timedelta,
    now: datetime,
) -> datetime | None:
    """Take the (playbook, target) cooldown; None if taken, else when it frees up.

    The incident that holds it may act again (its retries are bounded by max_retries).
    """
    ins = insert_into(conn, cooldowns)
    created = await conn.execute(
        ins.values(
            playbook_id=playbook_id, target=target, incident_id=incident_id, last_action_at=now
        ).on_conflict_do_nothing()
    )
    if created.rowcount:
        return None
    key = and_(cooldowns.c.playbook_id == playbook_id, cooldowns.c.target == target)
    taken = await conn.execute(
        update(cooldowns)
        .where(
            key,
            or_(
                cooldowns.c.last_action_at <= now - cooldown, cooldowns.c.incident_id == incident_id
            ),
        )
        .values(last_action_at=now, incident_id=incident_id)
    )
    if taken.rowcount:
        return None
    last = await conn.scalar(select(cooldowns.c.last_action_at).where(key))
    return (last or now) + cooldown


async def lock_target(
    conn: AsyncConnection,
    target: str,
    incident_id: int,
    owner: str,
    now: datetime,
    hold: timedelta,
) -> bool:
    """Take the per-target lock; False while another incident's unexpired lock holds it."""
    ins = insert_into(conn, target_locks)
    created = await conn.execute(
        ins.values(
            target=target, incident_id=incident_id, owner=owner, expires_at=now + hold
        ).on_conflict_do_nothing()
    )
    if created.rowcount:
        return True
    taken = await conn.execute(
        update(target_locks)
        .where(
            target_locks.c.target == target,
            or_(target_locks.c.expires_at <= now, target_locks.c.incident_id == incident_id),
        )
        .values(incident_id=incident_id, owner=owner, expires_at=now + hold)
    )
    return bool(taken.rowcount)


async def unlock_target(conn: AsyncConnection, target: str, incident_id: int) -> None:
    await conn.execute(
        delete(target_locks).where(
            target_locks.c.target == target, target_locks.c.incident_id == incident_id
        )
    )


def budget_window(now: datetime, window_seconds: float) -> datetime:
    """The start of the fixed window ``now`` falls in."""
    epoch = now.timestamp()
    return datetime.fromtimestamp(epoch - epoch % window_seconds, tz=UTC)


async def take_budget(
    conn: AsyncConnection, now: datetime, budget: int, window_seconds: float
) -> bool:
    """One action from this window's budget; False when it is spent."""
    start = budget_window(now, window_seconds)
    created = await conn.execute(
        insert_into(conn, action_budget).values(window_start=start, used=0).on_conflict_do_nothing()
    )
    if created.rowcount:  # a new window: forget the old ones
        await conn.execute(
            delete(action_budget).where(action_budget.c.window_start < start - timedelta(hours=1))
        )
    taken = await conn.execute(
        update(action_budget)
        .where(action_budget.c.window_start == start, action_budget.c.used < budget)
        .values(used=action_budget.c.used + 1)
    )
    return bool(taken.rowcount)


async def refund_budget(conn: AsyncConnection, now: datetime, window_seconds: float) -> None:
    """Give back a unit taken in this transaction whose action will not run after all."""
    await conn.execute(
        update(action_budget)
        .where(
            action_budget.c.window_start == budget_window(now, window_seconds),
            action_budget.c.used > 0,
        )
        .values(used=action_budget.c.used - 1)
    )
