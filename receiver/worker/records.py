"""The writes every lifecycle step shares: a heal log, a deferral, an escalation."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from receiver.db import repo
from receiver.domain import EscalationReason, HealResult, IncidentStatus
from receiver.notify.base import Event
from receiver.worker.context import StepContext
from receiver.worker.plan import Plan

log = logging.getLogger(__name__)


async def write_log(
    ctx: StepContext,
    conn: Any,
    row: Mapping[str, Any],
    plan: Plan,
    result: HealResult,
    now: datetime,
    reason: str | None = None,
    output: str = "",
    *,
    attempt: int | None = None,
) -> int:
    """Write a heal log for this plan; anything but pending is final at once."""
    if result is not HealResult.PENDING:
        ctx.metrics.heal_attempts.labels(
            plan.playbook.name, plan.playbook.action_type, result.value
        ).inc()
    return await repo.add_heal_log(
        conn,
        incident_id=row["id"],
        playbook_id=plan.playbook_id,
        action_type=plan.playbook.action_type,
        action_detail=plan.action_detail,
        target=plan.target or None,
        result=result.value,
        reason=reason,
        result_output=output,
        attempt=row["retry_count"] if attempt is None else attempt,
        created_at=now,
        finished_at=None if result is HealResult.PENDING else now,
        replica=ctx.owner,
    )


async def defer(
    ctx: StepContext,
    conn: Any,
    row: Mapping[str, Any],
    plan: Plan,
    guard: str,
    output: str,
    until: datetime,
    now: datetime,
) -> None:
    """A guard held the action back: record it, and look again when it may pass."""
    await write_log(ctx, conn, row, plan, HealResult.SKIPPED, now, guard, output)
    ctx.metrics.guard_refusals.labels(guard).inc()
    await repo.update_incident(
        conn,
        row["id"],
        {
            "status": IncidentStatus.OPEN.value,
            "playbook_id": plan.playbook_id,
            "next_attempt_at": until,
            "lease_owner": None,
            "lease_until": None,
            "updated_at": now,
        },
    )


async def escalate(
    ctx: StepContext,
    conn: Any,
    row: Mapping[str, Any],
    reason: EscalationReason,
    now: datetime,
    playbook_id: int | None = None,
) -> None:
    """Hand the incident to people, and give up the lease."""
    if playbook_id is not None:
        await repo.update_incident(conn, row["id"], {"playbook_id": playbook_id})
    if await repo.escalate(conn, row, reason, now):
        ctx.metrics.escalations.labels(reason.value).inc()
        log.info("incident %s escalated: %s", row["id"], reason.value)
        await conn.run_sync(repo.outbox.notify, ctx.notify, Event.ESCALATED, [row["id"]], now)
        ctx.on_escalated()
    await repo.release(conn, row["id"], ctx.owner)
