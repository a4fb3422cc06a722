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
from receiver.domain import ApprovalState, IncidentStatus
from receiver.effects import Effects
from receiver.errors import AutohealError
from receiver.metrics import Metrics
from receiver.notify.notices import Announcer
from receiver.worker import apply
from receiver.worker.writes import Writes


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
    announce: Announcer,
    incident_id: int,
    *,
    approve: bool,
    by: str,
    attempt: int | None = None,
) -> Decision:
    """Record the decision; raises NotAwaiting. ``attempt``: the request it answers (a
    Telegram button names one; a stale button must not approve a later request)."""
    decision, effects = await db.run_in_transaction(
        _decide, announce, incident_id, approve, by, attempt, datetime.now(UTC), short=True
    )
    effects.apply(metrics, {})
    return decision


def _decide(
    conn: Connection,
    announce: Announcer,
    incident_id: int,
    approve: bool,
    by: str,
    attempt: int | None,
    now: datetime,
) -> tuple[Decision, Effects]:
    row = repo.get_incident(conn, incident_id)
    if (
        row is None
        or row["status"] != IncidentStatus.AWAITING_APPROVAL.value
        or row["approval_state"] != ApprovalState.PENDING.value
        or (attempt is not None and attempt != row["approval_attempt"])
    ):
        raise NotAwaiting(incident_id, row["status"] if row else None)
    w = Writes("", now, announce)
    apply.answered(w, row, approve, by)
    w.flush(conn)
    return Decision(incident_id, approve, by, int(row["approval_attempt"])), w.effects
