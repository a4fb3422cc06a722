"""A person's decision on a repair awaiting approval, from the API or a Telegram button.

Approve: the worker runs the attempt as soon as it looks (now). Deny: escalated ``denied``.
Either way a heal log says who decided and through what.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection

from receiver.db import repo
from receiver.db.engine import Database
from receiver.domain import EscalationReason, HealResult, IncidentStatus
from receiver.errors import AutohealError
from receiver.metrics import Metrics
from receiver.notify.base import Event, NotifyScope


class NotAwaiting(AutohealError):
    """The incident is not waiting for a decision (none asked, already decided, or gone)."""

    http_status = 409
    code = "not_awaiting_approval"

    def __init__(self, incident_id: int, status: str | None) -> None:
        super().__init__(f"incident {incident_id} is not awaiting approval ({status or 'unknown'})")
        self.status = status

    def problem(self) -> tuple[str, dict[str, Any]]:
        return str(self), {"incident_status": self.status}


@dataclass(frozen=True, slots=True)
class Decision:
    incident_id: int
    approved: bool
    by: str
    attempt: int


async def decide(
    db: Database,
    metrics: Metrics,
    notify: NotifyScope,
    incident_id: int,
    *,
    approve: bool,
    by: str,
    attempt: int | None = None,
) -> Decision:
    """Record the decision; raises NotAwaiting. ``attempt``: the request it answers (a
    Telegram button names one; a stale button must not approve a later request)."""
    decision, escalated = await db.run_in_transaction(
        _decide, notify, incident_id, approve, by, attempt, datetime.now(UTC), short=True
    )
    if escalated:
        metrics.escalations.labels(EscalationReason.DENIED.value).inc()
    return decision


def _decide(
    conn: Connection,
    notify: NotifyScope,
    incident_id: int,
    approve: bool,
    by: str,
    attempt: int | None,
    now: datetime,
) -> tuple[Decision, bool]:
    row = repo.get_incident(conn, incident_id)
    if (
        row is None
        or row["status"] != IncidentStatus.AWAITING_APPROVAL.value
        or row["approval_state"] != "pending"
        or (attempt is not None and attempt != row["approval_attempt"])
    ):
        raise NotAwaiting(incident_id, row["status"] if row else None)
    result = HealResult.APPROVED if approve else HealResult.DENIED
    repo.heal_logs.add(
        conn,
        [
            {
                "incident_id": incident_id,
                "playbook_id": row["playbook_id"],
                "action_type": "approval",
                "action_detail": f"approval of attempt {row['approval_attempt']}",
                "target": row["target"],
                "result": result.value,
                "reason": "approval",
                "result_output": f"{result.value} by {by}",
                "attempt": row["approval_attempt"],
                "created_at": now,
                "finished_at": now,
            }
        ],
    )
    decision = Decision(incident_id, approve, by, int(row["approval_attempt"]))
    if approve:
        approved = {"approval_state": "approved", "approval_by": by, "next_attempt_at": now}
        repo.incidents.update_many(
            conn,
            [(incident_id, approved)],
            only_if_status=IncidentStatus.AWAITING_APPROVAL.value,
        )
        return decision, False
    repo.incidents.update_many(
        conn, [(incident_id, {"approval_state": "denied", "approval_by": by})]
    )
    escalated = repo.incidents.escalate(conn, [row], EscalationReason.DENIED, now)
    repo.outbox.notify(conn, notify, Event.ESCALATED, escalated, now)
    return decision, bool(escalated)
