"""The incidents table outside ingest: claims and leases, state changes, queries."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from receiver.db.repo._sql import ACTIVE, RESOLVABLE, lease_rows
from receiver.db.schema import incidents, playbooks
from receiver.domain import EscalationReason, IncidentStatus, Resolved, Source

# A resolve notes whether a repair held: the SET clause reads the row as it was.
_REPAIRING = [IncidentStatus.HEALING.value, IncidentStatus.VERIFYING.value]
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


async def resolve_task(conn: AsyncConnection, task: str, now: datetime) -> list[Resolved]:
    """A scheduler's success ping: its task's open and escalated incidents are resolved."""
    result = await conn.execute(
        resolving(
            update(incidents)
            .where(
                incidents.c.source == Source.SCHEDULER.value,
                incidents.c.task_name == task,
                incidents.c.status.in_(RESOLVABLE),
            )
            .values(**resolved_values(now), dedup_key=None)
        )
    )
    return as_resolved(result.all())


async def claim(
    conn: AsyncConnection, owner: str, now: datetime, lease: timedelta, limit: int
) -> list[int]:
    """Lease up to ``limit`` due incidents. Expired leases are taken over (a dead replica)."""
    rows = await lease_rows(
        conn,
        incidents,
        and_(incidents.c.status.in_(ACTIVE), incidents.c.next_attempt_at <= now),
        incidents.c.next_attempt_at,
        or_(incidents.c.lease_until.is_(None), incidents.c.lease_until < now),
        owner=owner,
        until=now + lease,
        limit=limit,
        returning=[incidents.c.id],
    )
    return [r[0] for r in rows]


async def release(conn: AsyncConnection, incident_id: int, owner: str) -> None:
    await conn.execute(
        update(incidents)
        .where(incidents.c.id == incident_id, incidents.c.lease_owner == owner)
        .values(lease_owner=None, lease_until=None)
    )


async def next_due(conn: AsyncConnection) -> datetime | None:
    """When the earliest active incident falls due: how long the worker may sleep."""
    value = await conn.scalar(
        select(func.min(incidents.c.next_attempt_at)).where(incidents.c.status.in_(ACTIVE))
    )
    return value if isinstance(value, datetime) else None


async def get_incident(conn: AsyncConnection, incident_id: int) -> dict[str, Any] | None:
    row = (await conn.execute(select(incidents).where(incidents.c.id == incident_id))).first()
    return dict(row._mapping) if row else None


async def update_incident(
    conn: AsyncConnection,
    incident_id: int,
    values: Mapping[str, Any],
    *,
    only_if_status: Iterable[str] | None = None,
) -> bool:
    """Apply values; with only_if_status, only while the incident is still in one of them."""
    stmt = update(incidents).where(incidents.c.id == incident_id).values(**values)
    if only_if_status is not None:
        stmt = stmt.where(incidents.c.status.in_(list(only_if_status)))
    result = await conn.execute(stmt)
    return bool(result.rowcount)


async def escalate(
    conn: AsyncConnection, incident: Mapping[str, Any], reason: EscalationReason, now: datetime
) -> bool:
    """Escalate an active incident. A scheduler incident gives up its dedup key, so the task's
    next failure opens a new one; an alert's key stays (its resends still attach)."""
    values: dict[str, Any] = {
        "status": IncidentStatus.ESCALATED.value,
        "escalation_reason": reason.value,
        "next_attempt_at": None,
        "updated_at": now,
    }
    if incident["source"] == Source.SCHEDULER.value:
        values["dedup_key"] = None
    return await update_incident(conn, incident["id"], values, only_if_status=ACTIVE)


async def resolve(
    conn: AsyncConnection, incident: Mapping[str, Any], now: datetime
) -> Resolved | None:
    """Resolve an active incident (a quiet verify window); None if it was no longer active."""
    values = resolved_values(now)
    if incident["source"] == Source.SCHEDULER.value:
        values["dedup_key"] = None
    result = await conn.execute(
        resolving(
            update(incidents)
            .where(incidents.c.id == incident["id"], incidents.c.status.in_(ACTIVE))
            .values(**values)
        )
    )
    rows = as_resolved(result.all())
    return rows[0] if rows else None


async def list_incidents(
    conn: AsyncConnection,
    *,
    status: str | None,
    error_type: str | None,
    limit: int,
    offset: int,
) -> tuple[list[dict[str, Any]], int]:
    conds = []
    if status:
        conds.append(incidents.c.status == status)
    if error_type:
        conds.append(incidents.c.error_type == error_type)
    total = await conn.scalar(select(func.count()).select_from(incidents).where(*conds))
    rows = (
        await conn.execute(
            select(incidents)
            .where(*conds)
            .order_by(incidents.c.id.desc())
            .limit(limit)
            .offset(offset)
        )
    ).all()
    return [dict(r._mapping) for r in rows], int(total or 0)


async def status_summary(conn: AsyncConnection) -> dict[str, tuple[int, datetime | None]]:
    """Per status (resolved aside): how many, and the oldest last change among them.

    Reads the (status, ...) indexes only for statuses that hold live work; escalated rows
    stay until retention prunes them.
    """
    rows = (
        await conn.execute(
            select(incidents.c.status, func.count(), func.min(incidents.c.updated_at))
            # Not resolved: resolved is all of history (counted by a counter instead).
            .where(incidents.c.status.in_(RESOLVABLE))
            .group_by(incidents.c.status)
        )
    ).all()
    return {status: (int(n), oldest) for status, n, oldest in rows}


async def backlog(conn: AsyncConnection, now: datetime) -> tuple[int, datetime | None]:
    """Incidents due now that no live lease holds, and the earliest due time among them."""
    row = (
        await conn.execute(
            select(func.count(), func.min(incidents.c.next_attempt_at)).where(
                incidents.c.status.in_(ACTIVE),
                incidents.c.next_attempt_at <= now,
                or_(incidents.c.lease_until.is_(None), incidents.c.lease_until < now),
            )
        )
    ).one()
    return int(row[0]), row[1]


def with_playbook_name() -> Any:
    """SELECT incidents with their playbook's name as ``playbook_name`` (None without one)."""
    return select(incidents, playbooks.c.name.label("playbook_name")).select_from(
        incidents.outerjoin(playbooks, incidents.c.playbook_id == playbooks.c.id)
    )


async def escalations(
    conn: AsyncConnection, resolved_since: datetime, limit: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Incidents escalated now (newest first, at most ``limit``), and those once escalated
    that resolved since ``resolved_since``: what Alertmanager's AutoHealEscalated alerts show."""
    columns = with_playbook_name()
    escalated = (
        await conn.execute(
            columns.where(incidents.c.status == IncidentStatus.ESCALATED.value)
            .order_by(incidents.c.updated_at.desc())
            .limit(limit)
        )
    ).all()
    ended = (
        await conn.execute(
            columns.where(
                incidents.c.status == IncidentStatus.RESOLVED.value,
                incidents.c.escalation_reason.is_not(None),
                incidents.c.resolved_at >= resolved_since,
            ).limit(limit)
        )
    ).all()
    return [dict(r._mapping) for r in escalated], [dict(r._mapping) for r in ended]
