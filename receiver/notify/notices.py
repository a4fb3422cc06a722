"""Notices built where the state change commits: what people will read about each incident,
written to the outbox in the same transaction as the change (the sender delivers it later).

The store hands over the rows (``repo.outbox.notice_rows``); the words are chosen here, so
``db/`` knows nothing of how a notification reads. ``Announcer`` is what every writer of an
outcome (the worker, ingest, the success ping, the approval API) is given to announce it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from receiver import evidence
from receiver.db import repo
from receiver.domain import EscalationReason, IncidentStatus, NoticeEvent, Paused
from receiver.notify.base import Notice

# Past heals are looked up for an unmatched fault only in small batches: a storm is one
# summary message anyway, and the ingest transaction must stay short.
SIMILAR_UP_TO = 20


@dataclass(frozen=True, slots=True)
class Announcer:
    """Which channels get a row per notice, and where messages link incidents."""

    channels: tuple[str, ...]
    incident_base_url: str
    healing: bool = False  # also announce when an action starts

    def __call__(
        self, conn: Connection, event: NoticeEvent, incident_ids: Sequence[int], now: datetime
    ) -> int:
        """Queue ``event`` for each incident on every channel; the rows written."""
        if not self.channels or not incident_ids:
            return 0
        notices = build(conn, self, event, incident_ids)
        payloads: list[tuple[int | None, dict[str, Any]]] = [
            (n.incident_id, n.to_json()) for n in notices
        ]
        return repo.outbox.enqueue(conn, self.channels, event, payloads, now)

    async def operation(
        self, conn: AsyncConnection, event: NoticeEvent, text: str, now: datetime
    ) -> int:
        """Queue a notice about autoheal itself (paused, resumed): no incident, ``text``
        is what people read; written with the change, delivered like any other."""
        if not self.channels:
            return 0
        notice = Notice(
            event=event.value,
            incident_id=0,
            task_name="autoheal",
            error_type="-",
            severity="-",
            status=event.value,
            message=text[:1000],
            incident_url="",
        )
        payloads: list[tuple[int | None, dict[str, Any]]] = [(None, notice.to_json())]
        return await conn.run_sync(repo.outbox.enqueue, self.channels, event, payloads, now)


def paused_text(paused: Paused) -> str:
    ends = f" until {paused.until.isoformat()}" if paused.until else " until resumed"
    return f"Paused by {paused.by}{ends}: {paused.reason}. No action starts on any replica."


def resumed_text(was: Paused, by: str, woke: int) -> str:
    return (
        f"Resumed by {by} (paused by {was.by} since {was.at.isoformat()}: {was.reason}); "
        f"{woke} incident(s) it held back are due now."
    )


def build(
    conn: Connection, announcer: Announcer, event: NoticeEvent, incident_ids: Sequence[int]
) -> list[Notice]:
    """Notices from the incidents as this transaction sees them, with their last attempt."""
    found, last = repo.outbox.notice_rows(conn, incident_ids)
    similar = len(incident_ids) <= SIMILAR_UP_TO
    return [_notice(conn, announcer, event, m, last.get(m["id"]), similar) for m in found]


def _notice(
    conn: Connection,
    announcer: Announcer,
    event: NoticeEvent,
    m: Mapping[str, Any],
    log: Any,
    similar: bool,
) -> Notice:
    healed_in = None
    if m["healed"] and m["resolved_at"] is not None:
        healed_in = round((m["resolved_at"] - m["created_at"]).total_seconds(), 1)
    reason = m["escalation_reason"] if m["status"] == IncidentStatus.ESCALATED.value else None
    note = None  # alert_only's message (the seed's ALERT_ONLY text) is what people read
    if log is not None and reason == EscalationReason.ALERT_ONLY.value:
        note = log.result_output[:1500]
    elif reason == EscalationReason.NO_PLAYBOOK.value:
        # What would have made a playbook match, then what healed similar faults.
        notes = [m["escalation_detail"]]
        if similar:
            notes.append(_similar_note(conn, m["error_message"]))
        note = "\n".join(n for n in notes if n) or None
    asks = event is NoticeEvent.APPROVAL
    return Notice(
        event=event.value,
        incident_id=m["id"],
        task_name=m["task_name"],
        error_type=m["error_type"],
        severity=m["severity"],
        status=m["status"],
        message=m["error_message"][:1000],
        incident_url=f"{announcer.incident_base_url}/{m['id']}",
        target=m["target"],
        playbook=m["playbook_name"],
        reason=reason,
        action=log.action_detail[:300] if log is not None else None,
        result=log.result if log is not None else None,
        note=note,
        attempts=int(m["retry_count"]),
        time_to_heal_seconds=healed_in,
        generator_url=m["generator_url"] or None,
        links=dict(m["links"]) if m.get("links") else None,
        approval_attempt=m["approval_attempt"] if asks else None,
        approval_deadline=(
            m["approval_deadline"].isoformat() if asks and m["approval_deadline"] else None
        ),
        evidence=evidence.summary(log.evidence) if log is not None else None,
    )


def _similar_note(conn: Connection, message: str) -> str | None:
    found = repo.knowledge.similar(conn, message)
    if not found:
        return None
    return "Similar faults healed before: " + "; ".join(
        f"{s['playbook']} ({s['successes']}/{s['attempts']} healed, "
        f"{s['similarity']:.0%} similar: {s['example_message'][:120]})"
        for s in found
    )
