"""Approval, on the worker's side: a playbook with ``approval: required`` asks before it runs
each attempt, and gives up with ``approval_timeout`` when nobody decides in time. Decisions
themselves are made through ``receiver.approval`` (API and Telegram)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from receiver.domain import EscalationReason, HealResult, IncidentStatus
from receiver.notify.base import Event
from receiver.worker.plan import Plan
from receiver.worker.writes import Writes


def approved(row: Mapping[str, Any], attempt: int) -> bool:
    return bool(row["approval_state"] == "approved" and row["approval_attempt"] == attempt)


def request(w: Writes, row: Mapping[str, Any], plan: Plan, attempt: int) -> None:
    """Ask for a decision on this attempt: the incident waits, people are told."""
    deadline = w.now + timedelta(minutes=plan.playbook.approval_timeout_minutes)
    output = f"waiting for approval until {deadline.isoformat()}: {plan.action_detail}"
    w.log(row, plan, HealResult.SKIPPED, "awaiting_approval", output, attempt=attempt)
    w.effects.count("guard_refusals", "approval")
    w.update(
        row["id"],
        {
            "status": IncidentStatus.AWAITING_APPROVAL.value,
            "approval_state": "pending",
            "approval_attempt": attempt,
            "approval_deadline": deadline,
            "approval_by": None,
            "playbook_id": plan.playbook_id,
            "target": plan.target,
            "next_attempt_at": deadline,
            "updated_at": w.now,
        },
    )
    w.release(row["id"])
    w.notice(Event.APPROVAL, row["id"])


def waiting(w: Writes, row: dict[str, Any], plan: Plan) -> bool:
    """An incident awaiting approval came due. True: approved, go on (``row`` is open
    again); False: escalated at the deadline, or still waiting."""
    if row["approval_state"] == "approved":
        row["status"] = IncidentStatus.OPEN.value
        return True
    deadline = row["approval_deadline"] or w.now
    if w.now >= deadline:
        w.log(
            row,
            plan,
            HealResult.SKIPPED,
            "approval_timeout",
            f"no decision by {deadline.isoformat()}; nothing was run",
            attempt=row["approval_attempt"] or row["retry_count"] + 1,
        )
        w.escalate(row, EscalationReason.APPROVAL_TIMEOUT, plan.playbook_id)
        return False
    w.update(row["id"], {"next_attempt_at": deadline})
    w.release(row["id"])
    return False
