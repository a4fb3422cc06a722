"""What people, gauges and the escalator read of incidents: listings, per-status counts,
the worker's backlog, the current escalations."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from receiver.db.repo._sql import ACTIVE, RESOLVABLE
from receiver.db.repo.heal_logs import incident_heal_logs
from receiver.db.repo.incidents import get_incident
from receiver.db.repo.retention import last_id_before
from receiver.db.schema import incidents, outbox, playbooks, signals
from receiver.domain import IncidentStatus, Source


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


async def incidents_page(
    conn: AsyncConnection,
    *,
    status: str | None = None,
    error_type: str | None = None,
    target: str | None = None,
    since: datetime | None = None,
    before: int | None = None,
    limit: int = 50,
) -> tuple[list[dict[str, Any]], bool]:
    """A page of incidents, newest first, below ``before`` (keyset paging: no OFFSET, the
    same cost on page 1 and page 20,000); and whether there are more."""
    conds = []
    if status:
        conds.append(incidents.c.status == status)
    if error_type:
        conds.append(incidents.c.error_type == error_type)
    if target:
        conds.append(incidents.c.target == target)
    if since is not None:
        conds.append(incidents.c.created_at >= since)
        # Ids grow with time: the rows before ``since`` end near this id (a few point reads
        # find it), and the newest-first walk stops there instead of reading every row.
        older = await last_id_before(conn, incidents, incidents.c.created_at, since)
        if older is not None:
            conds.append(incidents.c.id > older)
    order = [incidents.c.id.desc()]
    if status and not target:
        # Newest first along the (status, created_at) index: a rare status (awaiting
        # approval) is then a short walk, not a sort of every row that has it.
        order = [incidents.c.created_at.desc(), incidents.c.id.desc()]
        if before is not None:
            at = await conn.scalar(select(incidents.c.created_at).where(incidents.c.id == before))
            if at is not None:
                conds.append(tuple_(incidents.c.created_at, incidents.c.id) < tuple_(at, before))
    elif before is not None:
        conds.append(incidents.c.id < before)
    rows = (
        await conn.execute(select(incidents).where(*conds).order_by(*order).limit(limit + 1))
    ).all()
    return [dict(r._mapping) for r in rows[:limit]], len(rows) > limit


@dataclass(frozen=True, slots=True)
class Timeline:
    """One incident and what happened to it: the signals that made it, every attempt, every
    notice (the page and ``autoheal incident`` show it)."""

    incident: dict[str, Any]
    signals: list[dict[str, Any]]
    heal_logs: list[dict[str, Any]]
    notices: list[dict[str, Any]]


async def timeline(conn: AsyncConnection, incident_id: int) -> Timeline | None:
    row = await conn.run_sync(get_incident, incident_id)
    if row is None:
        return None
    return Timeline(
        row,
        await incident_signals(conn, row),
        await incident_heal_logs(conn, incident_id),
        await incident_notices(conn, incident_id),
    )


async def incident_signals(
    conn: AsyncConnection, incident: dict[str, Any], limit: int = 200
) -> list[dict[str, Any]]:
    """The signals that made an incident, oldest first: for an alert, those of its
    fingerprint (by the key's prefix) received while it was open; for a scheduler's task,
    those of its task, type and message signature (a report's or the task watch's key)."""
    source = incident["source"]
    match: ColumnElement[bool]
    if source == Source.SCHEDULER.value:
        task, kind = incident["task_name"], incident["error_type"]
        keys = [f"ex:{task}:{kind}:{incident['signature']}", f"task:{task}:{kind}"]
        # The source condition lets the (partial) scheduler index answer.
        match = and_(signals.c.source == source, signals.c.incident_key.in_(keys))
    elif incident.get("fingerprint") and incident.get("starts_at") is not None:
        # Its key while open; after, the same key made again from the fingerprint and
        # startsAt (in UTC, as Prometheus' alerts come and Grafana's keys are made).
        prefix = "gf" if source == Source.GRAFANA.value else "am"
        started = incident["starts_at"].astimezone(UTC).isoformat(timespec="microseconds")
        made = {f"{prefix}:{incident['fingerprint']}:{started}", incident.get("dedup_key") or ""}
        # Its firing and resolved signals, by their idempotency keys (the unique index).
        sent = [f"{k}:{status}" for k in sorted(made - {""}) for status in ("firing", "resolved")]
        match = signals.c.idempotency_key.in_(sent)
    else:
        return []
    opened = incident["created_at"] - timedelta(seconds=5)  # its first signal came first
    ended = incident.get("resolved_at")
    window = [signals.c.last_received_at >= opened]
    if ended is not None:
        window.append(signals.c.received_at <= ended + timedelta(seconds=5))
    rows = (
        await conn.execute(
            select(
                signals.c.received_at,
                signals.c.last_received_at,
                signals.c.status,
                signals.c.occurrences,
                signals.c.message,
                signals.c.payload,
            )
            .where(match, *window)
            .order_by(signals.c.id)
            .limit(limit)
        )
    ).all()
    return [dict(r._mapping) for r in rows]


async def incident_notices(conn: AsyncConnection, incident_id: int) -> list[dict[str, Any]]:
    """The notifications about one incident: channel, event, delivery state."""
    rows = (
        await conn.execute(
            select(
                outbox.c.channel,
                outbox.c.event,
                outbox.c.status,
                outbox.c.attempts,
                outbox.c.created_at,
                outbox.c.sent_at,
                outbox.c.last_error,
            )
            .where(outbox.c.incident_id == incident_id)
            .order_by(outbox.c.id)
        )
    ).all()
    return [dict(r._mapping) for r in rows]


_FOLLOWED = (
    incidents.c.id,
    incidents.c.status,
    incidents.c.error_type,
    incidents.c.task_name,
    incidents.c.target,
    incidents.c.retry_count,
    incidents.c.escalation_reason,
    incidents.c.updated_at,
)


async def incidents_after(
    conn: AsyncConnection, after_id: int, watched: list[int], limit: int = 500
) -> tuple[list[Any], list[Any]]:
    """For a live tail: incidents opened after ``after_id`` (oldest first), and the current
    rows of the ``watched`` ones (both by primary key: cheap at any table size)."""
    new = (
        await conn.execute(
            select(*_FOLLOWED)
            .where(incidents.c.id > after_id)
            .order_by(incidents.c.id)
            .limit(limit)
        )
    ).all()
    now = (
        (await conn.execute(select(*_FOLLOWED).where(incidents.c.id.in_(watched)))).all()
        if watched
        else []
    )
    return list(new), list(now)


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
