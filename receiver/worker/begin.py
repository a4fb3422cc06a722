"""Begin: one transaction for a batch of claimed incidents. Each is resumed (after an
interrupted attempt), verified (did the last repair hold?), planned and guarded; those whose
action may run get a pending heal log and the status ``healing``; every other outcome
(resolved, escalated, deferred, waiting) is written in the same transaction.

The actions run after it commits, outside any transaction (``act``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from receiver.catalog import Catalog
from receiver.db import repo
from receiver.domain import EscalationReason, HealResult, IncidentStatus
from receiver.notify.base import Event
from receiver.playbooks import explain_no_match
from receiver.worker import approval, guards
from receiver.worker.context import StepContext
from receiver.worker.plan import Plan, incident_signal, make_plan, matching
from receiver.worker.verify import judge
from receiver.worker.writes import Effects, Writes

log = logging.getLogger(__name__)

_HEALING = IncidentStatus.HEALING.value


@dataclass(frozen=True, slots=True)
class Started:
    """An action about to run: its incident as claimed, the plan, the attempt, its log."""

    row: dict[str, Any]
    plan: Plan
    attempt: int
    log_id: int


@dataclass(frozen=True, slots=True)
class Begun:
    claimed: int
    started: list[Started]
    effects: Effects


def begin(
    conn: Connection,
    ctx: StepContext,
    catalog: Catalog,
    now: datetime,
    limit: int,
    running: frozenset[int] = frozenset(),
) -> Begun:
    """Claim up to ``limit`` due incidents and move each one step on, up to its action;
    those whose action runs are leased to this replica until it is recorded. ``running``:
    incidents whose action this process still runs; never claimed again beside it, even if
    its lease lapsed (a stalled renewal)."""
    lease = timedelta(seconds=ctx.settings.lease_seconds)
    rows = [r for r in repo.incidents.claim(conn, now, limit) if r["id"] not in running]
    w = Writes(ctx.owner, now, ctx.notify, claimed=True)
    if not rows:
        return Begun(0, [], w.effects)
    interrupted = [r["id"] for r in rows if r["status"] == _HEALING]
    if interrupted:
        # Claimable while healing: whoever was healing let the lease expire mid-attempt.
        n = repo.heal_logs.fail_interrupted(conn, interrupted, now)
        log.warning("incidents %s: resuming after an interrupted attempt (%d)", interrupted, n)
    # First judge the repairs under verification: what did not hold is knowledge the plans
    # below may order playbooks by.
    planning: list[tuple[dict[str, Any], EscalationReason]] = []
    for row in rows:
        if row["status"] == _HEALING:
            row["status"] = IncidentStatus.OPEN.value
        if row["status"] != IncidentStatus.VERIFYING.value:
            planning.append((row, EscalationReason.MAX_RETRIES))
        elif judge(w, row):
            planning.append((row, EscalationReason.NOT_HEALED))
    w.flush_outcomes(conn)
    candidates = []
    for row, exhausted in planning:
        found = matching(catalog, row)
        # What was learned orders several matching playbooks; with one, there is no choice.
        learned = (
            repo.knowledge.records_for(conn, row["error_type"], row["signature"])
            if len(found) > 1
            else None
        )
        plan = make_plan(catalog, row, ctx.scope, found, learned)
        if isinstance(plan, EscalationReason):
            if plan is EscalationReason.NO_PLAYBOOK:  # the playbooks changed since ingest
                signal = incident_signal(row)
                detail = explain_no_match(catalog.playbooks, signal, catalog.classifier)
                w.update(row["id"], {"escalation_detail": detail})
            w.escalate(row, plan)
            continue
        if row["status"] == IncidentStatus.AWAITING_APPROVAL.value and not approval.waiting(
            w, row, plan
        ):
            continue
        candidate = guards.check(w, ctx.settings, row, plan, exhausted)
        if candidate is not None:
            candidates.append(candidate)
    passed = guards.in_store(conn, w, ctx.settings, candidates)
    queued = []
    for c in passed:
        queued.append(w.log(c.row, c.plan, HealResult.PENDING, attempt=c.attempt))
        w.update(
            c.row["id"],
            {
                "status": _HEALING,
                "retry_count": c.attempt,
                "playbook_id": c.plan.playbook_id,
                "target": c.plan.target,
                "last_action_at": now,
                "updated_at": now,
                "lease_owner": ctx.owner,
                "lease_until": now + lease,
            },
        )
        if ctx.notify.healing:
            w.notice(Event.HEALING, c.row["id"])
        w.effects.tell(
            "action_started",
            c.row["id"],
            playbook=c.plan.playbook.name,
            action=c.plan.action_detail,
            target=c.plan.target,
            attempt=c.attempt,
        )
    log_ids = w.flush(conn)
    started = [
        Started(c.row, c.plan, c.attempt, log_ids[i]) for c, i in zip(passed, queued, strict=True)
    ]
    return Begun(len(rows), started, w.effects)
