"""Guard rows held in the store so they hold across replicas: cooldowns, target locks, the
global action budget.

Each takes a whole batch of wanted rows at once (the worker guards a batch of incidents in
one transaction): one INSERT ... ON CONFLICT DO NOTHING RETURNING, executed for many rows
(SQLAlchemy sends them as multi-row statements of a cached shape), takes every free row;
only the rows already there are read and taken one by one, where a condition allows it.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, case, delete, or_, select, tuple_, update

from receiver.db.repo._sql import dialect_insert, dialect_name, insert_into
from receiver.db.repo.multirow import execute_many
from receiver.db.schema import action_budget, cooldowns, target_locks


@functools.cache
def _take(dialect: str, table: Any) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING incident_id, built once per dialect."""
    return dialect_insert(dialect)(table).on_conflict_do_nothing().returning(table.c.incident_id)


_UNLOCK = delete(target_locks).where(
    target_locks.c.target == bindparam("_target"),
    target_locks.c.incident_id == bindparam("_incident"),
)


def _for_update(conn: Connection, stmt: Any) -> Any:
    # PostgreSQL: another replica must not take the row between this read and our UPDATE.
    # SQLite: the writer already holds the database lock (BEGIN IMMEDIATE).
    return stmt.with_for_update() if dialect_name(conn) == "postgresql" else stmt


def lock_targets(
    conn: Connection,
    wanted: Sequence[tuple[str, int]],
    owner: str,
    now: datetime,
    hold: timedelta,
) -> set[int]:
    """Take the per-target lock for each ``(target, incident id)`` (targets distinct); the
    incidents that got theirs. Another incident's unexpired lock holds a target back; an
    expired one, or the incident's own (a retry after a crash), is taken over."""
    if not wanted:
        return set()
    by_target = dict(wanted)
    created = conn.execute(
        _take(dialect_name(conn), target_locks), _lock_rows(wanted, owner, now + hold)
    )
    got = {r[0] for r in created}
    held = [t for t, i in wanted if i not in got]
    if not held:
        return got
    found = read_locks(conn, held)
    return got | _take_over(conn, [(t, by_target[t]) for t in held if t in found], owner, now, hold)


def _lock_rows(
    wanted: Sequence[tuple[str, int]], owner: str, until: datetime
) -> list[dict[str, Any]]:
    return [{"target": t, "incident_id": i, "owner": owner, "expires_at": until} for t, i in wanted]


def _take_over(
    conn: Connection, wanted: Sequence[tuple[str, int]], owner: str, now: datetime, hold: timedelta
) -> set[int]:
    """Lock rows that exist: taken where expired or already the incident's own."""
    got = set()
    for target, mine in wanted:
        taken = conn.execute(
            update(target_locks)
            .where(
                target_locks.c.target == target,
                or_(target_locks.c.expires_at <= now, target_locks.c.incident_id == mine),
            )
            .values(incident_id=mine, owner=owner, expires_at=now + hold)
        )
        if taken.rowcount:
            got.add(mine)
    return got


def unlock_targets(conn: Connection, held: Sequence[tuple[str, int]]) -> None:
    """Give up the locks these ``(target, incident id)`` hold."""
    if held:
        execute_many(conn, _UNLOCK, [{"_target": t, "_incident": i} for t, i in held])


def take_cooldowns(
    conn: Connection,
    wanted: Sequence[tuple[int, str, int, timedelta]],
    now: datetime,
) -> dict[int, datetime]:
    """Take the (playbook, target) cooldown for each ``(playbook id, target, incident id,
    cooldown)`` (pairs distinct). Returns, for each incident refused, when its cooldown
    frees up. The incident that holds a cooldown may act again (max_retries bounds it)."""
    if not wanted:
        return {}
    created = conn.execute(
        _take(dialect_name(conn), cooldowns),
        [
            {"playbook_id": p, "target": t, "incident_id": i, "last_action_at": now}
            for p, t, i, _ in wanted
        ],
    )
    got = {r[0] for r in created}
    held = {(p, t): (i, c) for p, t, i, c in wanted if i not in got}
    refused: dict[int, datetime] = {}
    if not held:
        return refused
    for (playbook_id, target), (holder, last) in read_cooldowns(conn, list(held)).items():
        mine, cooldown = held.pop((playbook_id, target))
        if last > now - cooldown and holder != mine:
            refused[mine] = last + cooldown
            continue
        conn.execute(
            update(cooldowns)
            .where(cooldowns.c.playbook_id == playbook_id, cooldowns.c.target == target)
            .values(last_action_at=now, incident_id=mine)
        )
    for mine, cooldown in held.values():  # gone since the INSERT (pruned): wait a turn
        refused[mine] = now + cooldown
    return refused


def budget_window(now: datetime, window_seconds: float) -> datetime:
    """The start of the fixed window ``now`` falls in."""
    epoch = now.timestamp()
    return datetime.fromtimestamp(epoch - epoch % window_seconds, tz=UTC)


def take_budget(
    conn: Connection, now: datetime, budget: int, window_seconds: float, wanted: int
) -> int:
    """Up to ``wanted`` actions from this window's budget; how many were granted."""
    start = budget_window(now, window_seconds)
    created = conn.execute(
        insert_into(conn, action_budget).values(window_start=start, used=0).on_conflict_do_nothing()
    )
    if created.rowcount:  # a new window: forget the old ones
        conn.execute(
            delete(action_budget).where(action_budget.c.window_start < start - timedelta(hours=1))
        )
    used = conn.scalar(
        _for_update(conn, select(action_budget.c.used).where(action_budget.c.window_start == start))
    )
    granted = max(0, min(wanted, budget - int(used or 0)))
    if granted:
        conn.execute(
            update(action_budget)
            .where(action_budget.c.window_start == start)
            .values(used=action_budget.c.used + granted)
        )
    return granted


def refund_budget(conn: Connection, now: datetime, window_seconds: float, units: int) -> None:
    """Give back units taken in this transaction whose actions will not run after all."""
    if units <= 0:
        return
    used = action_budget.c.used
    conn.execute(
        update(action_budget)
        .where(action_budget.c.window_start == budget_window(now, window_seconds))
        .values(used=case((used > units, used - units), else_=0))
    )


# What the worker's rules read before they decide: the guard rows a batch's plans name,
# locked on PostgreSQL (the takes that follow then find them as read; a row another replica
# inserts meanwhile makes a take fail, and the worker decides that incident again).


@functools.cache
def _read_locks(dialect: str) -> Any:
    stmt = select(
        target_locks.c.target, target_locks.c.incident_id, target_locks.c.expires_at
    ).where(target_locks.c.target.in_(bindparam("targets", expanding=True)))
    return stmt.with_for_update() if dialect == "postgresql" else stmt


def read_locks(conn: Connection, targets: Sequence[str]) -> dict[str, tuple[int, datetime]]:
    """target -> (incident id holding it, until when)."""
    if not targets:
        return {}
    found = conn.execute(_read_locks(dialect_name(conn)), {"targets": sorted(set(targets))})
    return {t: (i, until) for t, i, until in found}


def read_cooldowns(
    conn: Connection, pairs: Sequence[tuple[int, str]]
) -> dict[tuple[int, str], tuple[int, datetime]]:
    """(playbook id, target) -> (incident id that started it, when its action started)."""
    if not pairs:
        return {}
    found = conn.execute(_read_cooldowns(dialect_name(conn)), {"pairs": sorted(set(pairs))})
    return {(p, t): (i, last) for p, t, i, last in found}


@functools.cache
def _read_cooldowns(dialect: str) -> Any:
    key = tuple_(cooldowns.c.playbook_id, cooldowns.c.target)
    stmt = select(
        cooldowns.c.playbook_id,
        cooldowns.c.target,
        cooldowns.c.incident_id,
        cooldowns.c.last_action_at,
    ).where(key.in_(bindparam("pairs", expanding=True)))
    return stmt.with_for_update() if dialect == "postgresql" else stmt


def budget_used(conn: Connection, now: datetime, window_seconds: float) -> int:
    """Actions taken in the budget window ``now`` falls in."""
    start = budget_window(now, window_seconds)
    used = conn.scalar(
        _for_update(conn, select(action_budget.c.used).where(action_budget.c.window_start == start))
    )
    return int(used or 0)
