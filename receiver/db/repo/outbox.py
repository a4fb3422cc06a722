"""The outbox table: notifications written with the state change that causes them, then
claimed with a lease by a sender and marked sent (or failed) once.

``notify`` is synchronous so the ingest batch (a plain function on its connection) can call
it; async callers use ``await conn.run_sync(notify, ...)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from receiver.db.repo import knowledge
from receiver.db.repo._sql import lease_rows
from receiver.db.repo.incidents import with_playbook_name
from receiver.db.schema import heal_logs, incidents, outbox
from receiver.domain import HealResult
from receiver.notify.base import Event, Notice, NotifyScope

PENDING, SENT, FAILED = "pending", "sent", "failed"
# Past heals are looked up for an unmatched fault only in small batches: a storm is one
# summary message anyway, and the ingest transaction must stay short.
SIMILAR_UP_TO = 20


def _similar_note(conn: Connection, message: str) -> str | None:
    found = knowledge.similar(conn, message)
    if not found:
        return None
    return "Similar faults healed before: " + "; ".join(
        f"{s['playbook']} ({s['successes']}/{s['attempts']} healed, "
        f"{s['similarity']:.0%} similar: {s['example_message'][:120]})"
        for s in found
    )


def notify(
    conn: Connection,
    scope: NotifyScope,
    event: str,
    incident_ids: Sequence[int],
    now: datetime,
) -> int:
    """Queue ``event`` for each incident on every channel; the rows written."""
    if not scope.channels or not incident_ids:
        return 0
    notices = build_notices(conn, scope, event, incident_ids)
    rows = [
        {
            "channel": channel,
            "event": event,
            "incident_id": n.incident_id,
            "payload": n.to_json(),
            "status": PENDING,
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for n in notices
        for channel in scope.channels
    ]
    if rows:
        conn.execute(insert(outbox), rows)
    return len(rows)


def build_notices(
    conn: Connection, scope: NotifyScope, event: str, incident_ids: Sequence[int]
) -> list[Notice]:
    """Notices from the incidents as this transaction sees them, with their last attempt."""
    ids = list(incident_ids)
    found = conn.execute(
        with_playbook_name().where(incidents.c.id.in_(ids)).order_by(incidents.c.id)
    ).all()
    last: dict[int, Any] = {}
    for attempt in conn.execute(
        select(
            heal_logs.c.incident_id,
            heal_logs.c.action_detail,
            heal_logs.c.result,
            heal_logs.c.result_output,
            heal_logs.c.attempt,
        )
        .where(heal_logs.c.incident_id.in_(ids), heal_logs.c.result != HealResult.PENDING.value)
        .order_by(heal_logs.c.id)
    ):
        last[attempt.incident_id] = attempt
    notices = []
    for row in found:
        m = row._mapping
        log = last.get(m["id"])
        healed_in = None
        if m["healed"] and m["resolved_at"] is not None:
            healed_in = round((m["resolved_at"] - m["created_at"]).total_seconds(), 1)
        reason = m["escalation_reason"] if m["status"] == "escalated" else None
        note = None  # alert_only's message (the seed's ALERT_ONLY text) is what people read
        if log is not None and reason == "alert_only":
            note = log.result_output[:1500]
        elif reason == "no_playbook":
            # What would have made a playbook match, then what healed similar faults.
            notes = [m["escalation_detail"]]
            if len(ids) <= SIMILAR_UP_TO:
                notes.append(_similar_note(conn, m["error_message"]))
            note = "\n".join(n for n in notes if n) or None
        notices.append(
            Notice(
                event=event,
                incident_id=m["id"],
                task_name=m["task_name"],
                error_type=m["error_type"],
                severity=m["severity"],
                status=m["status"],
                message=m["error_message"][:1000],
                incident_url=f"{scope.incident_base_url}/{m['id']}",
                target=m["target"],
                playbook=m["playbook_name"],
                reason=reason,
                action=log.action_detail[:300] if log is not None else None,
                result=log.result if log is not None else None,
                note=note,
                attempts=int(m["retry_count"]),
                time_to_heal_seconds=healed_in,
                generator_url=m["generator_url"] or None,
                approval_attempt=m["approval_attempt"] if event == Event.APPROVAL else None,
                approval_deadline=(
                    m["approval_deadline"].isoformat()
                    if event == Event.APPROVAL and m["approval_deadline"]
                    else None
                ),
            )
        )
    return notices


async def claim(
    conn: AsyncConnection, owner: str, now: datetime, lease: timedelta, limit: int
) -> list[Any]:
    """Lease up to ``limit`` due rows (oldest first). Expired leases are taken over, and so
    are this owner's own: one sender per process runs one flush at a time, so a row still
    leased to its name was left by a previous incarnation that died mid-send (a restarted
    replica with a stable ``replica_id``, or a container whose pid is 1 again)."""
    rows = await lease_rows(
        conn,
        outbox,
        and_(outbox.c.status == PENDING, outbox.c.next_attempt_at <= now),
        outbox.c.id,
        or_(
            outbox.c.lease_until.is_(None),
            outbox.c.lease_until < now,
            outbox.c.lease_owner == owner,
        ),
        owner=owner,
        until=now + lease,
        limit=limit,
        returning=[outbox.c.id, outbox.c.channel, outbox.c.payload, outbox.c.attempts],
    )
    return sorted(rows, key=lambda r: r.id)


async def finish(
    conn: AsyncConnection,
    ids: Iterable[int],
    owner: str,
    now: datetime,
    *,
    status: str,
    error: str | None = None,
    retry_at: datetime | None = None,
) -> int:
    """Settle rows this owner holds: sent, failed for good, or pending again at ``retry_at``."""
    values: dict[str, Any] = {"lease_owner": None, "lease_until": None, "last_error": error}
    if status == SENT:
        values.update(status=SENT, sent_at=now)
    elif status == FAILED:
        values.update(status=FAILED, attempts=outbox.c.attempts + 1)
    else:
        assert retry_at is not None
        values.update(next_attempt_at=retry_at, attempts=outbox.c.attempts + 1)
    result = await conn.execute(
        update(outbox)
        .where(outbox.c.id.in_(list(ids)), outbox.c.lease_owner == owner)
        .values(**values)
    )
    return int(result.rowcount)


async def pending(conn: AsyncConnection) -> int:
    """Rows still to deliver (for the gauge)."""
    return int(
        await conn.scalar(
            select(func.count()).select_from(outbox).where(outbox.c.status == PENDING)
        )
        or 0
    )
