"""Guards, checked in the store in order before an action may run: the slot check, max
retries, dry run, a person's approval (when the playbook requires one), the global action
budget, one action per target, cooldown per (playbook, target). A budget unit taken for an
action that a later guard holds back is given back in the same transaction."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from receiver.db import repo
from receiver.domain import EscalationReason, HealResult
from receiver.errors import SlotError
from receiver.worker import approval
from receiver.worker.context import StepContext
from receiver.worker.plan import Plan
from receiver.worker.records import defer, escalate, write_log

# How soon an incident held back by another one acting on its target looks again.
BUSY_RETRY = timedelta(seconds=2)


async def pass_guards(
    ctx: StepContext,
    conn: Any,
    row: Mapping[str, Any],
    plan: Plan,
    now: datetime,
    exhausted: EscalationReason = EscalationReason.MAX_RETRIES,
) -> int | None:
    """The attempt number if the action may run, else None (the refusal is recorded and the
    incident escalated or deferred). ``exhausted``: the reason to give when retries are used
    up (``not_healed`` when the last repair ran but did not hold)."""
    playbook = plan.playbook
    if isinstance(plan.params, SlotError):
        await write_log(
            ctx, conn, row, plan, HealResult.REFUSED, now, "slot_refused", str(plan.params)
        )
        ctx.metrics.guard_refusals.labels("slot").inc()
        await escalate(ctx, conn, row, EscalationReason.REFUSED, now, plan.playbook_id)
        return None
    if row["retry_count"] >= playbook.max_retries:
        ctx.metrics.guard_refusals.labels("max_retries").inc()
        await escalate(ctx, conn, row, exhausted, now, plan.playbook_id)
        return None
    if ctx.settings.dry_run or playbook.dry_run:
        output = f"dry run: would run {plan.action_detail}"
        attempt = row["retry_count"] + 1
        await write_log(
            ctx, conn, row, plan, HealResult.DRY_RUN, now, "dry_run", output, attempt=attempt
        )
        await escalate(ctx, conn, row, EscalationReason.DRY_RUN, now, plan.playbook_id)
        return None
    attempt = int(row["retry_count"]) + 1
    if playbook.approval_required and not approval.approved(row, attempt):
        await approval.request(ctx, conn, row, plan, attempt, now)
        return None
    settings = ctx.settings
    if settings.action_budget and not await repo.take_budget(
        conn, now, settings.action_budget, settings.action_budget_window_seconds
    ):
        output = (
            f"action budget spent: {settings.action_budget} per "
            f"{settings.action_budget_window_seconds:g}s; would run {plan.action_detail}"
        )
        await write_log(ctx, conn, row, plan, HealResult.SKIPPED, now, "budget", output)
        ctx.metrics.guard_refusals.labels("budget").inc()
        await escalate(ctx, conn, row, EscalationReason.BUDGET, now, plan.playbook_id)
        return None
    # One action at a time per target, across replicas; held past the action timeout so a
    # replica that dies holding it frees the target by itself.
    hold = timedelta(seconds=ctx.settings.action_timeout_seconds + 30)
    if not await repo.lock_target(conn, plan.target, row["id"], ctx.owner, now, hold):
        output = f"another incident is acting on {plan.target}"
        await _refund(ctx, conn, now)
        await defer(ctx, conn, row, plan, "target_busy", output, now + BUSY_RETRY, now)
        return None
    cooldown = timedelta(minutes=playbook.cooldown_minutes)
    free_at = (
        await repo.take_cooldown(conn, plan.playbook_id, plan.target, row["id"], cooldown, now)
        if cooldown
        else None  # no cooldown: nothing to take
    )
    if free_at is not None:
        await repo.unlock_target(conn, plan.target, row["id"])
        output = f"{plan.target} in cooldown for {playbook.name!r} until {free_at.isoformat()}"
        await _refund(ctx, conn, now)
        await defer(ctx, conn, row, plan, "cooldown", output, free_at, now)
        return None
    return attempt


async def _refund(ctx: StepContext, conn: Any, now: datetime) -> None:
    if ctx.settings.action_budget:
        await repo.refund_budget(conn, now, ctx.settings.action_budget_window_seconds)
