"""Act: run a started action outside any transaction; then record what came of a batch of
finished ones in one transaction."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from receiver import evidence
from receiver.actions import ActionContext, ActionOutcome
from receiver.domain import HealResult, LogReason, ResolveKind
from receiver.effects import Effects
from receiver.resources import MAX_OUTPUT
from receiver.worker import apply
from receiver.worker.begin import Started
from receiver.worker.context import StepContext
from receiver.worker.decide import after_action
from receiver.worker.decisions import Facts
from receiver.worker.writes import Writes

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Done:
    """A finished action: what it came to, how long it took, and what its target looked
    like before (None when nothing was looked at)."""

    started: Started
    outcome: ActionOutcome
    seconds: float
    evidence: dict[str, Any] | None = None


async def look_first(ctx: StepContext, s: Started) -> dict[str, Any] | None:
    """The evidence before the action, if it names something to look at. Bounded by its own
    timeout; whatever goes wrong is said in the evidence, and the action runs anyway."""
    # The Inspected protocol's one method, looked up directly: an isinstance() against a
    # runtime-checkable Protocol costs 10 µs, 0.2 s of CPU over a storm's 20,000 actions.
    subject = getattr(ctx.actions[s.plan.playbook.action_type], "subject", None)
    if subject is None or not ctx.evidence.enabled:
        return None
    try:
        seen = await evidence.capture(subject(s.plan.params), ctx.resources, ctx.evidence)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.exception("incident %s: evidence capture raised; acting without it", s.row["id"])
        return {"errors": [f"capture failed: {type(exc).__name__}: {exc}"]}
    if seen and seen.get("errors"):
        log.warning("incident %s: evidence incomplete: %s", s.row["id"], "; ".join(seen["errors"]))
    return seen


async def run_action(ctx: StepContext, s: Started) -> Done:
    """Look at the target, then run the action; a timeout or an exception is a failed
    outcome."""
    action_type = s.plan.playbook.action_type
    timeout = ctx.settings.action_timeout_seconds
    action_ctx = ActionContext(s.row["id"], s.row["labels"] or {}, timeout, ctx.resources)
    seen = await look_first(ctx, s)
    started = time.perf_counter()
    try:
        # A deadline on this task (wait_for would run the action in a task of its own).
        async with asyncio.timeout(timeout):
            outcome = await ctx.actions[action_type].run(s.plan.params, action_ctx)
    except asyncio.CancelledError:
        raise
    except TimeoutError:
        outcome = ActionOutcome(ok=False, output=f"timed out after {timeout:g}s")
    except Exception as exc:
        log.exception("incident %s: action %s raised", s.row["id"], action_type)
        outcome = ActionOutcome(ok=False, output=f"{type(exc).__name__}: {exc}")
    return Done(s, outcome, time.perf_counter() - started, seen)


def cleared(conn: Connection, ctx: StepContext, rows: Sequence[Any], now: datetime) -> Effects:
    """Resolve these verifying incidents: their alert cleared in Alertmanager (healed,
    known and told as if the resolve notification had come)."""
    w = Writes(ctx.owner, now, ctx.notify)
    for row in rows:
        w.resolve({"id": row.id, "source": row.source}, ResolveKind.ALERT_CLEARED)
    w.flush(conn)
    return w.effects


def record(conn: Connection, ctx: StepContext, done: Sequence[Done], now: datetime) -> Effects:
    """Finish each heal log, then: verifying (success), escalated, or open after a back-off
    (``decide.after_action``). An incident no longer healing under this replica's lease
    keeps its state."""
    w = Writes(ctx.owner, now, ctx.notify)
    policy, facts = ctx.policy, Facts(now)
    for d in done:
        row, plan, outcome = d.started.row, d.started.plan, d.outcome
        playbook, incident_id = plan.playbook, row["id"]
        result = (HealResult.SUCCESS if outcome.ok else HealResult.FAILED).value
        w.effects.attempts[playbook.name, playbook.action_type, result] += 1
        w.effects.durations.append((playbook.action_type, result, d.seconds))
        if d.evidence is not None:
            w.effects.evidence["partial" if d.evidence.get("errors") else "complete"] += 1
        w.effects.tell(
            "action_result",
            incident_id,
            result=result,
            seconds=round(d.seconds, 3),
            target=plan.target,
            output=outcome.output[-200:],
        )
        w.finish_log(
            d.started.log_id,
            result=result,
            result_output=outcome.output[-MAX_OUTPUT:],
            duration_ms=int(d.seconds * 1000),
            finished_at=now,
            reason=None if outcome.ok or outcome.retryable else LogReason.NOT_RETRYABLE.value,
            action_detail=outcome.detail,  # what actually ran, when the action knows better
            evidence=d.evidence,
        )
        w.outcome(incident_id, plan.playbook_id, outcome.ok)
        if plan.exclusive:
            w.unlock(plan.target, incident_id)
        nxt = after_action(
            plan,
            d.started.attempt,
            outcome.ok,
            outcome.retryable,
            outcome.escalate,
            outcome.verify_after,
            policy,
            facts,
        )
        apply.after_action(w, row, nxt)
    w.flush(conn)
    return w.effects
