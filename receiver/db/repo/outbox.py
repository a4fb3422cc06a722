"""The outbox table: notifications written with the state change that causes them, then
claimed with a lease by a sender and marked sent (or failed) once.

``enqueue`` is synchronous so the ingest batch (a plain function on its connection) can call
it; what the rows say is built in ``receiver.notify.notices``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Connection, and_, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from receiver.db.repo._sql import lease_rows
from receiver.db.repo.reports import with_playbook_name
from receiver.db.schema import heal_logs, incidents, outbox
from receiver.domain import HealResult, NoticeEvent, OutboxState


class Announce(Protocol):
    """Writes the notices of an outcome in the transaction that makes it (``notify/``
    builds them: the store only reads the rows and queues what it is handed)."""

    def __call__(
        self, conn: Connection, event: NoticeEvent, incident_ids: Sequence[int], now: datetime
    ) -> int: ...


def enqueue(
    conn: Connection,
    channels: Sequence[str],
    event: NoticeEvent,
    payloads: Sequence[tuple[int | None, dict[str, Any]]],
    now: datetime,
) -> int:
    """One row per (incident's payload, channel); the rows written."""
    rows = [
        {
            "channel": channel,
            "event": event.value,
            "incident_id": incident_id,
            "payload": payload,
            "status": OutboxState.PENDING.value,
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for incident_id, payload in payloads
        for channel in channels
    ]
    if rows:
        conn.execute(insert(outbox), rows)
    return len(rows)


def notice_rows(
    conn: Connection, incident_ids: Sequence[int]
) -> tuple[list[Mapping[str, Any]], dict[int, Any]]:
    """What a notice says, as this transaction sees it: the incidents (with their
    playbook's name), by id, and each one's last finished attempt."""
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
            heal_logs.c.evidence,
        )
        .where(heal_logs.c.incident_id.in_(ids), heal_logs.c.result != HealResult.PENDING.value)
        .order_by(heal_logs.c.id)
    ):
        last[attempt.incident_id] = attempt
    return [dict(r._mapping) for r in found], last


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
        and_(outbox.c.status == OutboxState.PENDING.value, outbox.c.next_attempt_at <= now),
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
    status: OutboxState | str,
    error: str | None = None,
    retry_at: datetime | None = None,
) -> int:
    """Settle rows this owner holds: sent, failed for good, or pending again at ``retry_at``."""
    values: dict[str, Any] = {"lease_owner": None, "lease_until": None, "last_error": error}
    if status == OutboxState.SENT:
        values.update(status=OutboxState.SENT.value, sent_at=now)
    elif status == OutboxState.FAILED:
        values.update(status=OutboxState.FAILED.value, attempts=outbox.c.attempts + 1)
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
            select(func.count())
            .select_from(outbox)
            .where(outbox.c.status == OutboxState.PENDING.value)
        )
        or 0
    )
