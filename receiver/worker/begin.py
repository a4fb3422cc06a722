"""Begin: one transaction for a batch of claimed incidents, in the order each passes:

1. claim (and fail the attempts a lapsed lease interrupted);
2. judge the repairs under verification (``decide.verdict``); what did not hold is
   knowledge, written first, that the plans below may order playbooks by;
3. plan (pure: which playbook, which parameters), reading what was learned where several
   playbooks match;
4. read the facts the store rules need, decide every incident (``decide.decide``), and take
   the guard rows of the actions that start, deciding again those another replica beat;
5. apply the decisions (``apply``) and flush them as a few multi-row statements.

The actions run after it commits, outside any transaction (``act``).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from receiver.catalog import Catalog
from receiver.db import repo
from receiver.domain import EscalationReason, Guard, IncidentStatus
from receiver.effects import Effects
from receiver.playbooks import explain_no_match
from receiver.worker import apply
from receiver.worker import facts as store_facts
from receiver.worker.context import StepContext
from receiver.worker.decide import BUSY_RETRY, decide, verdict
from receiver.worker.decisions import (
    Case,
    Decision,
    Defer,
    Escalate,
    Facts,
    Incident,
    NotHeld,
    Start,
)
from receiver.worker.lookout import Seen
from receiver.worker.plan import Plan, incident_signal, make_plan, matching
from receiver.worker.writes import Writes

log = logging.getLogger(__name__)

# Rounds of deciding again the actions another replica beat to a guard row (each round
# reads what that replica wrote, so one is the rule and three the most contended case).
_TAKE_ROUNDS = 3


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
    seen: Seen | None = None,
) -> Begun:
    """Claim up to ``limit`` due incidents and move each one step on, up to its action;
    those whose action runs are leased to this replica until it is recorded. ``running``:
    incidents whose action this process still runs; never claimed again beside it, even if
    its lease lapsed (a stalled renewal)."""
    rows = [r for r in repo.incidents.claim(conn, now, limit) if r["id"] not in running]
    w = Writes(ctx.owner, now, ctx.notify, claimed=True)
    if not rows:
        return Begun(0, [], w.effects)
    interrupted = [r["id"] for r in rows if r["status"] == IncidentStatus.HEALING.value]
    if interrupted:
        n = repo.heal_logs.fail_interrupted(conn, interrupted, now)
        log.warning("incidents %s: resuming after an interrupted attempt (%d)", interrupted, n)
    judged = Facts(now)
    planning: list[tuple[dict[str, Any], Incident, EscalationReason]] = []
    for row in rows:
        incident = Incident.of(row)
        if incident.status is not IncidentStatus.VERIFYING:
            planning.append((row, incident, EscalationReason.MAX_RETRIES))
            continue
        v = verdict(incident, judged)
        apply.verdict(w, row, v)
        if isinstance(v, NotHeld):
            reopened = dataclasses.replace(incident, status=IncidentStatus.OPEN)
            planning.append((row, reopened, EscalationReason.NOT_HEALED))
    w.flush_outcomes(conn)
    cases = [_case(conn, ctx, catalog, row, i, exhausted) for row, i, exhausted in planning]
    planned = [row for row, _, _ in planning]
    decisions = _decide(conn, ctx, w, planned, cases, seen or Seen())
    lease = timedelta(seconds=ctx.settings.lease_seconds)
    queued: list[tuple[dict[str, Any], Start, int]] = []
    for row, d in zip(planned, decisions, strict=True):
        position = apply.decision(w, row, d, lease)
        if position is not None:
            assert isinstance(d, Start)
            queued.append((row, d, position))
    log_ids = w.flush(conn)
    started = [Started(row, d.plan, d.attempt, log_ids[i]) for row, d, i in queued]
    return Begun(len(rows), started, w.effects)


def _case(
    conn: Connection,
    ctx: StepContext,
    catalog: Catalog,
    row: dict[str, Any],
    incident: Incident,
    exhausted: EscalationReason,
) -> Case:
    found = matching(catalog, row)
    # What was learned orders several matching playbooks; with one, there is no choice.
    learned = (
        repo.knowledge.records_for(conn, row["error_type"], row["signature"])
        if len(found) > 1
        else None
    )
    plan = make_plan(catalog, ctx.actions, row, ctx.scope, found, learned)
    if plan is not None:
        return Case(incident, plan, exhausted)
    # The playbooks changed since ingest: say what would have matched.
    why = explain_no_match(catalog.playbooks, incident_signal(row), catalog.classifier)
    return Case(incident, None, exhausted, why)


def _decide(
    conn: Connection,
    ctx: StepContext,
    w: Writes,
    rows: Sequence[dict[str, Any]],
    cases: Sequence[Case],
    seen: Seen,
) -> list[Decision]:
    """Decide every case; take the guard rows of those that start.

    The first round knows the budget spent and learns the lock and cooldown rows by taking
    them: an INSERT takes every free one and reports those already there (a storm's targets
    are nearly all free, so reading them first would be a round trip per batch for
    nothing). The incidents that lost a row, and those a store rule held back, are then
    decided again on the rows as they are now: a lock or a unit of budget a loser did not
    use goes to the next one in order, as if the rows had been read first. What still loses
    after a few rounds (another replica racing for the same rows) looks again shortly."""
    policy = ctx.policy
    hold = timedelta(seconds=ctx.settings.action_timeout_seconds + 30)
    planned = any(c.plan for c in cases)
    # Read once per batch, where every replica decides: a pause holds them all at once.
    paused = repo.pause.current(conn, w.now) if planned else None
    facts = Facts(
        w.now, paused=paused, blocking=seen.blocking, alerts=seen.alerts, fleet=seen.fleet
    )
    facts = store_facts.read_facts(conn, policy, facts, [], budget=planned)
    if paused is None:
        # Counts are read, not learned by taking: quarantine rows and recent actions, and
        # the targets a playbook with a blast radius is engaged on.
        plans = [p for c in cases if (p := c.plan) is not None]
        facts = store_facts.read_quarantine(conn, policy, facts, plans)
        facts = store_facts.read_engaged(conn, facts, plans)
    facts = store_facts.read_firings(conn, facts, cases)
    decided: dict[int, Decision] = {}
    todo = list(range(len(cases)))
    for _ in range(_TAKE_ROUNDS):
        decided.update(zip(todo, decide([cases[i] for i in todo], policy, facts), strict=True))
        starts = [(i, d) for i in todo if isinstance(d := decided[i], Start)]
        lost = {
            starts[j][0]
            for j in apply.take(conn, w, policy, hold, [(rows[i], d) for i, d in starts])
        }
        if not lost:
            return [decided[i] for i in range(len(cases))]
        todo = [i for i in todo if i in lost or _held_by_the_store(decided[i])]
        plans = [p for i in todo if (p := cases[i].plan) is not None]
        # The targets the winners took count against their playbook's blast radius.
        won = [d.plan for i, d in starts if i not in lost]
        facts = store_facts.read_facts(conn, policy, _engaging(facts, won), plans)
    for i in todo:
        plan = cases[i].plan
        if isinstance(decided[i], Start) and plan is not None:
            output = f"another replica took a guard row for {plan.target or plan.playbook.name}"
            decided[i] = Defer(plan, Guard.TARGET_BUSY, output, w.now + BUSY_RETRY)
    return [decided[i] for i in range(len(cases))]


def _engaging(facts: Facts, plans: Sequence[Plan]) -> Facts:
    """``facts`` with the targets these started plans engage added to their playbook's,
    for the playbooks with a blast radius (whether or not they had targets before)."""
    limited = [p for p in plans if p.playbook.brakes.limits_targets]
    if not limited:
        return facts
    engaged = {pid: set(targets) for pid, targets in facts.engaged.items()}
    for p in limited:
        engaged.setdefault(p.playbook_id, set()).add(p.target)
    return dataclasses.replace(facts, engaged={pid: frozenset(t) for pid, t in engaged.items()})


_STORE_GUARDS = (Guard.TARGET_BUSY, Guard.COOLDOWN, Guard.BUDGET)


def _held_by_the_store(d: Decision) -> bool:
    """Refused by a rule that reads the store's rows (a lock, a cooldown, the budget)."""
    return isinstance(d, Defer | Escalate) and d.guard in _STORE_GUARDS
