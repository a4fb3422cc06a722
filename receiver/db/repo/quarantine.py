"""Quarantined targets: a target that took more actions in a window than its playbook
allows gets a row; no automatic action touches it until a person lifts it. The worker reads
the rows and counts the recent actions of a batch's targets where it decides (``read``,
``recent_actions``) and trips new ones in its transaction (``trip``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from receiver.db.repo._sql import insert_into
from receiver.db.schema import heal_logs, quarantine
from receiver.domain import HealResult, Quarantined

# The heal logs that are actions run (or running), not refusals or decisions.
ACTED = (HealResult.PENDING.value, HealResult.SUCCESS.value, HealResult.FAILED.value)
_COLUMNS = (quarantine.c.target, quarantine.c.since, quarantine.c.reason, quarantine.c.incident_id)


# Built once: building a statement per batch (expressions, then SQLAlchemy's cache key) cost
# more than running it (py-spy, bench/storm.py).
_HELD = select(*_COLUMNS, quarantine.c.lifted_at).where(
    quarantine.c.target.in_(bindparam("targets", expanding=True))
)
# No condition on result: with one, SQLite's planner takes the result index and reads every
# action ever logged, per batch (2 ms at 20,000 heal logs, growing); the few rows of a
# batch's targets are filtered here instead.
_RECENT = select(heal_logs.c.target, heal_logs.c.created_at, heal_logs.c.result).where(
    heal_logs.c.target.in_(bindparam("targets", expanding=True)),
    heal_logs.c.created_at >= bindparam("since"),
)


def _of(row: Any) -> Quarantined:
    return Quarantined(row.target, row.since, row.reason, row.incident_id)


def read(
    conn: Connection, targets: Sequence[str]
) -> tuple[dict[str, Quarantined], dict[str, datetime]]:
    """For these targets: those quarantined, and when the others were last lifted (their
    count starts there)."""
    if not targets:
        return {}, {}
    rows = conn.execute(_HELD, {"targets": list(set(targets))}).all()
    held = {r.target: _of(r) for r in rows if r.lifted_at is None}
    lifted = {r.target: r.lifted_at for r in rows if r.lifted_at is not None}
    return held, lifted


def recent_actions(
    conn: Connection, targets: Sequence[str], since: datetime
) -> dict[str, list[datetime]]:
    """When each target's actions since ``since`` started, newest first."""
    if not targets:
        return {}
    rows = conn.execute(_RECENT, {"targets": list(set(targets)), "since": since}).all()
    found: dict[str, list[datetime]] = {}
    for target, at, result in rows:
        if result in ACTED:
            found.setdefault(target, []).append(at)
    for times in found.values():
        times.sort(reverse=True)
    return found


def trip(conn: Connection, rows: Iterable[dict[str, Any]]) -> None:
    """Quarantine these targets (a lifted row is quarantined again; a held one kept)."""
    for values in rows:
        stmt = insert_into(conn, quarantine).values(**values, lifted_at=None, lifted_by=None)
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[quarantine.c.target],
                set_={
                    "since": stmt.excluded.since,
                    "reason": stmt.excluded.reason,
                    "incident_id": stmt.excluded.incident_id,
                    "playbook_id": stmt.excluded.playbook_id,
                    "lifted_at": None,
                    "lifted_by": None,
                },
                where=quarantine.c.lifted_at.is_not(None),
            )
        )


async def list_held(conn: AsyncConnection) -> list[Quarantined]:
    rows = await conn.execute(
        select(*_COLUMNS).where(quarantine.c.lifted_at.is_(None)).order_by(quarantine.c.since)
    )
    return [_of(r) for r in rows.all()]


async def count_held(conn: AsyncConnection) -> int:
    stmt = select(func.count()).select_from(quarantine).where(quarantine.c.lifted_at.is_(None))
    return int((await conn.execute(stmt)).scalar_one())


async def lift(conn: AsyncConnection, target: str, by: str, now: datetime) -> Quarantined | None:
    """Lift the quarantine of ``target``: automatic actions may touch it again, and its
    count starts now. None: it was not quarantined."""
    row = (
        await conn.execute(
            update(quarantine)
            .where(and_(quarantine.c.target == target, quarantine.c.lifted_at.is_(None)))
            .values(lifted_at=now, lifted_by=by)
            .returning(*_COLUMNS)
        )
    ).first()
    return _of(row) if row is not None else None
