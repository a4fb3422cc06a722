"""Act: run the planned action outside any transaction, then record what came of it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from receiver.actions import ACTIONS, ActionContext, ActionOutcome
from receiver.db import repo
from receiver.domain import EscalationReason, HealResult, IncidentStatus
from receiver.resources import MAX_OUTPUT
from receiver.worker.context import StepContext, now
from receiver.worker.plan import Plan
from receiver.worker.records import escalate

log = logging.getLogger(__name__)

_HEALING = [IncidentStatus.HEALING.value]


async def run_action(
    ctx: StepContext, plan: Plan, row: Mapping[str, Any]
) -> tuple[ActionOutcome, float]:
    """The action's outcome (a timeout or an exception is a failed outcome) and its seconds."""
    action_type = plan.playbook.action_type
    timeout = ctx.settings.action_timeout_seconds
    action_ctx = ActionContext(row["id"], row["labels"] or {}, timeout, ctx.resources)
    started = time.perf_counter()
    try:
        outcome = await asyncio.wait_for(ACTIONS[action_type].run(plan.params, action_ctx), timeout)
    except asyncio.CancelledError:
        raise
    except TimeoutError:
        outcome = ActionOutcome(ok=False, output=f"timed out after {timeout:g}s")
    except Exception as exc:
        log.exception("incident %s: action %s raised", row["id"], action_type)
        outcome = ActionOutcome(ok=False, output=f"{type(exc).__name__}: {exc}")
    return outcome, time.perf_counter() - started


async def record(
    ctx: StepContext,
    row: Mapping[str, Any],
    plan: Plan,
    log_id: int,
    attempt: int,
    outcome: ActionOutcome,
    duration: float,
) -> None:
    """Finish the heal log, then: verifying (success), escalated, or open after a back-off."""
    at = now()
    playbook, playbook_id = plan.playbook, plan.playbook_id
    result = HealResult.SUCCESS if outcome.ok else HealResult.FAILED
    ctx.metrics.heal_attempts.labels(playbook.name, playbook.action_type, result.value).inc()
    ctx.metrics.action_duration.labels(playbook.action_type, result.value).observe(duration)
    async with ctx.db.transaction() as conn:
        finished: dict[str, Any] = {
            "result": result.value,
            "result_output": outcome.output[-MAX_OUTPUT:],
            "duration_ms": int(duration * 1000),
            "finished_at": at,
            "reason": None if outcome.ok or outcome.retryable else "not_retryable",
        }
        if outcome.detail is not None:  # what actually ran, when the action knows better
            finished["action_detail"] = outcome.detail
        await repo.finish_heal_log(conn, log_id, **finished)
        await repo.count_playbook(conn, playbook_id, outcome.ok)
        if not outcome.ok:
            await conn.run_sync(repo.outcomes.not_healed, [row["id"]], at)
        await repo.unlock_target(conn, plan.target, row["id"])
        if outcome.ok and outcome.escalate is not None:
            await escalate(ctx, conn, row, outcome.escalate, at)
        elif outcome.ok:
            window = outcome.verify_after
            if window is None:
                window = playbook.verify_seconds
            if window is None:
                window = ctx.settings.default_verify_seconds
            deadline = at + timedelta(seconds=window)
            await repo.update_incident(
                conn,
                row["id"],
                {
                    "status": IncidentStatus.VERIFYING.value,
                    "verify_deadline": deadline,
                    "next_attempt_at": deadline,
                    "updated_at": at,
                },
                only_if_status=_HEALING,
            )
            await repo.release(conn, row["id"], ctx.owner)
        elif not outcome.retryable:
            await escalate(ctx, conn, row, EscalationReason.NOT_RETRYABLE, at)
        elif attempt >= playbook.max_retries:
            ctx.metrics.guard_refusals.labels("max_retries").inc()
            await escalate(ctx, conn, row, EscalationReason.MAX_RETRIES, at)
        else:
            backoff = timedelta(seconds=ctx.settings.retry_backoff_seconds)
            await repo.update_incident(
                conn,
                row["id"],
                {
                    "status": IncidentStatus.OPEN.value,
                    "next_attempt_at": at + backoff,
                    "updated_at": at,
                },
                only_if_status=_HEALING,
            )
            await repo.release(conn, row["id"], ctx.owner)
