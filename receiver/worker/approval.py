"""Approval, on the worker's side: a playbook with ``approval: required`` asks before it runs
each attempt, and gives up with ``approval_timeout`` when nobody decides in time. Decisions
themselves are made through ``receiver.approval`` (API and Telegram)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from receiver.db import repo
from receiver.domain import EscalationReason, HealResult, IncidentStatus
from receiver.notify.base import Event
from receiver.worker.context import StepContext
from receiver.worker.plan import Plan
from receiver.worker.records import escalate, write_log


def approved(row: Mapping[str, Any], attempt: int) -> bool:
    return bool(row["approval_state"] == "approved" and row["approval_attempt"] == attempt)


async def request(
    ctx: StepContext, conn: Any, row: Mapping[str, Any], plan: Plan, attempt: int, now: datetime
) -> None:
    """Ask for a decision on this attempt: the incident waits, people are told."""
    deadline = now + timedelta(minutes=plan.playbook.approval_timeout_minutes)
    output = f"waiting for approval until {deadline.isoformat()}: {plan.action_detail}"
    await write_log(
        ctx, conn, row, plan, HealResult.SKIPPED, now, "awaiting_approval", output, attempt=attempt
    )
    ctx.metrics.guard_refusals.labels("approval").inc()
    await repo.update_incident(
        conn,
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
            "lease_owner": None,
            "lease_until": None,
            "updated_at": now,
        },
    )
    await conn.run_sync(repo.outbox.notify, ctx.notify, Event.APPROVAL, [row["id"]], now)


async def waiting(
    ctx: StepContext, conn: Any, row: dict[str, Any], plan: Plan, now: datetime
) -> bool:
    """An incident awaiting approval came due. True: approved, go on (``row`` is open
    again); False: escalated at the deadline, or still waiting."""
    if row["approval_state"] == "approved":
        row["status"] = IncidentStatus.OPEN.value
        return True
    deadline = row["approval_deadline"] or now
    if now >= deadline:
        await write_log(
            ctx,
            conn,
            row,
            plan,
            HealResult.SKIPPED,
            now,
            "approval_timeout",
            f"no decision by {deadline.isoformat()}; nothing was run",
            attempt=row["approval_attempt"] or row["retry_count"] + 1,
        )
        await escalate(ctx, conn, row, EscalationReason.APPROVAL_TIMEOUT, now, plan.playbook_id)
        return False
    await repo.update_incident(
        conn, row["id"], {"next_attempt_at": deadline, "lease_owner": None, "lease_until": None}
    )
    return False
