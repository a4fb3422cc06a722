"""The incidents table outside ingest: claims and leases, state changes (the listings
people and gauges read are in ``reports``)."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from receiver.db.repo._sql import ACTIVE, RESOLVABLE, dialect_name
from receiver.db.repo.multirow import execute_many
from receiver.db.schema import incidents, playbooks, signals
from receiver.domain import EscalationReason, IncidentStatus, Resolved, Source

# A resolve notes whether a repair held: the SET clause reads the row as it was.
_REPAIRING = [IncidentStatus.HEALING.value, IncidentStatus.VERIFYING.value]
_FIRINGS = select(func.count(func.distinct(signals.c.incident_key))).where(
    signals.c.idempotency_key >= bindparam("lo"),
    signals.c.idempotency_key < bindparam("hi"),  # ";" sorts right after ":"
    signals.c.status == "firing",
    signals.c.received_at >= bindparam("since"),
)
_WAITING = [IncidentStatus.OPEN.value, IncidentStatus.AWAITING_APPROVAL.value]
_WATCHED = [
    s.value for s in (IncidentStatus.OPEN, IncidentStatus.HEALING, IncidentStatus.VERIFYING)
]


_RESOLVED_COLUMNS = (
    incidents.c.id,
    incidents.c.dedup_key,
    incidents.c.error_type,
    incidents.c.playbook_id,
    incidents.c.healed,
    incidents.c.created_at,
)


def resolved_values(now: datetime) -> dict[str, Any]:
    """What every resolve writes, whoever resolves (alert, success ping, quiet window)."""
    return {
        "status": IncidentStatus.RESOLVED.value,
        "resolved_at": now,
        "updated_at": now,
        "next_attempt_at": None,
        "healed": incidents.c.status.in_(_REPAIRING),
    }


def resolving(stmt: Any) -> Any:
    """An UPDATE of incidents that resolves them, returning what the metrics need."""
    return stmt.returning(*_RESOLVED_COLUMNS)


def as_resolved(rows: Iterable[Any]) -> list[Resolved]:
    return [
        Resolved(i, key, et, pid, bool(healed), created)
        for i, key, et, pid, healed, created in rows
    ]


def resolve_task(
    conn: Connection, task: str, now: datetime, error_types: Sequence[str] | None = None
) -> list[Resolved]:
    """A scheduler's success ping: its task's open and escalated incidents are resolved
    (only those of ``error_types`` when given: a start ping ends a missed run)."""
    only = () if error_types is None else (incidents.c.error_type.in_(list(error_types)),)
    result = conn.execute(
        resolving(
            update(incidents)
            .where(
                incidents.c.source == Source.SCHEDULER.value,
                incidents.c.task_name == task,
                incidents.c.status.in_(RESOLVABLE),
                *only,
            )
            .values(**resolved_values(now), dedup_key=None)
        )
    )
    return as_resolved(result.all())


# The worker's statements are built once, with bound parameters: building one per call
# (expressions, then SQLAlchemy's cache key) cost several times what executing it did, and
# a worker transaction runs about ten of them however few incidents it moves.


@functools.cache
def _claim(dialect: str) -> Any:
    now: Any = bindparam("now")
    pick = (
        select(incidents)
        .where(
            incidents.c.next_attempt_at <= now,
            or_(incidents.c.lease_until.is_(None), incidents.c.lease_until < now),
        )
        .order_by(incidents.c.next_attempt_at, incidents.c.id)
        .limit(bindparam("limit"))
    )
    return pick.with_for_update(skip_locked=True) if dialect == "postgresql" else pick


def claim(conn: Connection, now: datetime, limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` due incidents no live lease holds, earliest due first, locked for
    this transaction: on PostgreSQL by ``FOR UPDATE SKIP LOCKED`` (replicas pick apart), on
    SQLite by the write lock the transaction already holds. Expired leases are taken over
    (a dead replica). The worker decides in the same transaction and writes a lease only on
    the incidents whose action then runs: one UPDATE per incident, not a take and a decision.

    Only active incidents have a ``next_attempt_at`` (every path that ends one clears it),
    so the pick walks the partial index ix_incidents_due in order and stops after
    ``limit``; a status condition would have the planner sort every due incident instead.
    The status is checked on the rows read."""
    rows = [
        dict(r._mapping)
        for r in conn.execute(_claim(dialect_name(conn)), {"now": now, "limit": limit})
    ]
    return [r for r in rows if r["status"] in ACTIVE]


_RELEASE = (
    update(incidents)
    .where(
        incidents.c.id.in_(bindparam("ids", expanding=True)),
        incidents.c.lease_owner == bindparam("owner"),
    )
    .values(lease_owner=None, lease_until=None)
)


def release(conn: Connection, incident_ids: Iterable[int], owner: str) -> None:
    """Give up the leases this owner holds on these incidents."""
    ids = sorted(set(incident_ids))
    if ids:
        conn.execute(_RELEASE, {"ids": ids, "owner": owner})


_RENEW = (
    update(incidents)
    .where(
        incidents.c.id.in_(bindparam("ids", expanding=True)),
        incidents.c.lease_owner == bindparam("owner"),
        incidents.c.status == IncidentStatus.HEALING.value,
    )
    .values(lease_until=bindparam("until"))
    .returning(incidents.c.id)
)


def renew(conn: Connection, incident_ids: Iterable[int], owner: str, until: datetime) -> set[int]:
    """Extend this owner's leases on incidents it is healing; the ids it still held."""
    ids = sorted(set(incident_ids))
    if not ids:
        return set()
    return {int(r[0]) for r in conn.execute(_RENEW, {"ids": ids, "owner": owner, "until": until})}


_NEXT_DUE = select(func.min(incidents.c.next_attempt_at)).where(
    incidents.c.next_attempt_at.is_not(None)
)


async def next_due(conn: AsyncConnection) -> datetime | None:
    """When the earliest active incident falls due: how long the worker may sleep (one
    step into ix_incidents_due: only active incidents have a next attempt)."""
    value = await conn.scalar(_NEXT_DUE)
    return value if isinstance(value, datetime) else None


def get_incident(conn: Connection, incident_id: int) -> dict[str, Any] | None:
    row = conn.execute(select(incidents).where(incidents.c.id == incident_id)).first()
    return dict(row._mapping) if row else None


def update_many(
    conn: Connection,
    changes: Iterable[tuple[int, Mapping[str, Any]]],
    *,
    only_if_status: str | None = None,
    held_by: str | None = None,
) -> None:
    """Apply each incident's values, one executemany per set of columns; with
    ``only_if_status``, only to incidents still in that status; with ``held_by``, only to
    those whose lease that owner still holds."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for incident_id, values in changes:
        row = {"_id": incident_id, **values}
        if held_by is not None:
            row["_owner"] = held_by
        groups.setdefault(tuple(sorted(values)), []).append(row)
    for columns, rows in groups.items():
        execute_many(conn, _update(columns, only_if_status, held_by is not None), rows)


@functools.cache
def _update(columns: tuple[str, ...], only_if_status: str | None, held: bool) -> Any:
    stmt = (
        update(incidents)
        .where(incidents.c.id == bindparam("_id"))
        .values({c: bindparam(c) for c in columns})
    )
    if only_if_status is not None:
        stmt = stmt.where(incidents.c.status == only_if_status)
    if held:
        stmt = stmt.where(incidents.c.lease_owner == bindparam("_owner"))
    return stmt


def escalate(
    conn: Connection,
    rows: Iterable[Mapping[str, Any]],
    reason: EscalationReason,
    now: datetime,
) -> list[int]:
    """Escalate those of these incidents still active; returns their ids. A scheduler
    incident gives up its dedup key, so the task's next failure opens a new one; an alert's
    key stays (its resends still attach)."""
    by_source: dict[bool, list[int]] = {}
    for row in rows:
        by_source.setdefault(row["source"] == Source.SCHEDULER.value, []).append(row["id"])
    escalated: list[int] = []
    for scheduler, ids in by_source.items():
        params = {"ids": ids, "reason": reason.value, "now": now}
        escalated.extend(r[0] for r in conn.execute(_escalate(scheduler), params))
    return sorted(escalated)


@functools.cache
def _escalate(scheduler: bool) -> Any:
    values: dict[str, Any] = {
        "status": IncidentStatus.ESCALATED.value,
        "escalation_reason": bindparam("reason"),
        "next_attempt_at": None,
        "updated_at": bindparam("now"),
    }
    if scheduler:
        values["dedup_key"] = None
    return (
        update(incidents)
        .where(
            incidents.c.id.in_(bindparam("ids", expanding=True)),
            incidents.c.status.in_(ACTIVE),
        )
        .values(**values)
        .returning(incidents.c.id)
    )


def resolve(
    conn: Connection, rows: Iterable[Mapping[str, Any]], now: datetime, *, forget: bool = False
) -> list[Resolved]:
    """Resolve those of these incidents still active (a quiet verify window). A scheduler's
    incident, and with ``forget`` an alert's, gives up its dedup key: the fault's next
    report or notification opens a new incident."""
    by_source: dict[bool, list[int]] = {}
    for row in rows:
        by_source.setdefault(row["source"] == Source.SCHEDULER.value, []).append(row["id"])
    closed: list[Resolved] = []
    for scheduler, ids in by_source.items():
        values = resolved_values(now)
        if scheduler or forget:
            values["dedup_key"] = None
        result = conn.execute(
            resolving(
                update(incidents)
                .where(incidents.c.id.in_(ids), incidents.c.status.in_(ACTIVE))
                .values(**values)
            )
        )
        closed.extend(as_resolved(result.all()))
    return closed


def firings(conn: Connection, fingerprints: Iterable[str], since: datetime) -> dict[str, int]:
    """How often each alert fired since ``since``: its distinct firing signals (one startsAt
    each), found through the signals' unique key (``am:{fingerprint}:...``), so counting
    them costs no index on the hot insert path."""
    found: dict[str, int] = {}
    for fp in set(fingerprints):
        prefix = f"am:{fp}:"
        n = conn.execute(
            _FIRINGS, {"lo": prefix, "hi": prefix[:-1] + ";", "since": since}
        ).scalar_one()
        if n:
            found[fp] = int(n)
    return found


_ALERT_ROWS = (
    select(
        incidents.c.id,
        incidents.c.source,
        incidents.c.status,
        incidents.c.fingerprint,
        incidents.c.labels,
    )
    .where(incidents.c.source == Source.ALERTMANAGER.value, incidents.c.fingerprint.is_not(None))
    .limit(bindparam("limit"))
)


async def waited_alerts(conn: AsyncConnection, now: datetime, limit: int) -> list[Any]:
    """Due alert incidents that waited before (a decision named their playbook: a back-off,
    an approval, a pause, a window, a busy target), in claim order. Their alerts are
    re-checked in Alertmanager before the worker claims them."""
    stmt = _ALERT_ROWS.where(
        incidents.c.next_attempt_at <= now,
        incidents.c.status.in_(_WAITING),
        incidents.c.playbook_id.is_not(None),
    ).order_by(incidents.c.next_attempt_at, incidents.c.id)
    return list((await conn.execute(stmt, {"limit": limit})).all())


async def watched_alerts(conn: AsyncConnection, limit: int) -> list[Any]:
    """Alert incidents on their way to a verdict (open, healing, verifying)."""
    stmt = _ALERT_ROWS.where(incidents.c.status.in_(_WATCHED)).order_by(incidents.c.id)
    return list((await conn.execute(stmt, {"limit": limit})).all())


def engaged_targets(conn: Connection, playbook_ids: Sequence[int]) -> dict[int, frozenset[str]]:
    """The distinct targets these playbooks' active incidents name. On PostgreSQL their
    playbook rows are locked first, in id order: replicas deciding for the same playbook
    take turns (SQLite has one writer at a time anyway)."""
    ids = sorted(set(playbook_ids))
    if not ids:
        return {}
    if dialect_name(conn) == "postgresql":
        conn.execute(
            select(playbooks.c.id)
            .where(playbooks.c.id.in_(ids))
            .order_by(playbooks.c.id)
            .with_for_update()
        )
    rows = conn.execute(
        select(incidents.c.playbook_id, incidents.c.target)
        .where(
            incidents.c.playbook_id.in_(ids),
            incidents.c.status.in_(ACTIVE),
            incidents.c.target.is_not(None),
        )
        .distinct()
    )
    found: dict[int, set[str]] = {}
    for playbook_id, target in rows.all():
        found.setdefault(playbook_id, set()).add(target)
    return {pid: frozenset(t) for pid, t in found.items()}
