"""Decide (pure, no I/O): what happens next to each claimed incident, as a value.

An incident passes through three rules in turn; each is a plain function of values:

1. ``verdict``: a repair under verification held (resolve), did not (plan again), or the
   window is still open (wait).
2. ``decide``: for a batch, in order, the rules that need no store (no playbook, approval,
   slot check, max retries, dry run, maintenance windows, approval required), a pause, then
   those that read the store's ``Facts`` (quarantine, the global budget, one action per
   target, cooldown per playbook and target). A unit of budget an incident held back does
   not use goes to the next one the budget refused. The brakes are in ``holds``.
3. ``after_action``: verify a success, retry a failure after a back-off, or escalate.

``apply`` writes what these return. A new rule is a function here and a table of cases in
tests/test_decide.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from receiver.domain import (
    ApprovalState,
    EscalationReason,
    Guard,
    HealResult,
    IncidentStatus,
    LogReason,
    ResolveKind,
    Source,
)
from receiver.errors import SlotError
from receiver.worker.decisions import (
    AfterAction,
    AskApproval,
    Case,
    Decision,
    Defer,
    Escalate,
    Facts,
    Incident,
    Note,
    NotHeld,
    Policy,
    Resolve,
    Retry,
    Start,
    Verdict,
    Verify,
    Wait,
)
from receiver.worker.holds import (
    blast_radius,
    blocked,
    maintenance,
    paused,
    quarantine,
    recheck,
    threshold,
)
from receiver.worker.plan import Plan

# How soon an incident held back by another one acting on its target looks again.
BUSY_RETRY = timedelta(seconds=2)


def verdict(incident: Incident, facts: Facts) -> Verdict:
    """Judge a verifying incident. An alert's incident is healed when its alert
    resolves within the window (that resolve arrives through ingest), so one still here at
    the deadline was not. A scheduler incident is healed when its task stays quiet through
    the window, and not as soon as it fails again."""
    now = facts.now
    deadline = incident.verify_deadline or now
    recurred = (
        incident.source == Source.SCHEDULER.value
        and incident.last_action_at is not None
        and incident.last_seen_at is not None
        and incident.last_seen_at > incident.last_action_at
    )
    alert = incident.source != Source.SCHEDULER.value  # Alertmanager's or Grafana's
    if recurred or (now >= deadline and alert):
        return NotHeld()
    if now >= deadline:
        return Resolve(ResolveKind.QUIET)
    return Wait(deadline)


def decide(cases: Sequence[Case], policy: Policy, facts: Facts) -> list[Decision]:
    """One decision per case, in order."""
    decided = [_alone(c, policy, facts) for c in cases]
    if facts.paused is not None:
        # Nothing starts; what needs no action (escalations, asking a person) goes on.
        return [paused(d, facts) if isinstance(d, Start) else d for d in decided]
    starts = [(i, d) for i, d in enumerate(decided) if isinstance(d, Start)]
    if starts:
        held = _in_store([(cases[i].incident, d) for i, d in starts], policy, facts)
        for (i, _), d in zip(starts, held, strict=True):
            decided[i] = d
    return decided


def _alone(case: Case, policy: Policy, facts: Facts) -> Decision:
    """The rules that need nothing from the store. A ``Start`` here is a candidate the
    store rules may still hold back."""
    incident, plan, now = case.incident, case.plan, facts.now
    if plan is None:  # the playbooks changed since ingest: nothing matches any more
        return Escalate(EscalationReason.NO_PLAYBOOK, detail=case.no_match)
    gone = recheck(incident, plan, facts)
    if gone is not None:
        return gone
    if incident.status is IncidentStatus.AWAITING_APPROVAL:
        waited = _awaiting(incident, plan, facts)
        if waited is not None:
            return waited
    playbook = plan.playbook
    if isinstance(plan.params, SlotError):
        note = Note(HealResult.REFUSED, LogReason.SLOT_REFUSED, str(plan.params))
        return Escalate(EscalationReason.REFUSED, plan, note, Guard.SLOT)
    if incident.retry_count >= playbook.max_retries:
        return Escalate(case.exhausted, plan, guard=Guard.MAX_RETRIES)
    waits = threshold(incident, plan, facts)
    if waits is not None:
        return waits
    attempt = incident.retry_count + 1
    if policy.dry_run or playbook.dry_run:
        output = f"dry run: would run {plan.action_detail}"
        note = Note(HealResult.DRY_RUN, LogReason.DRY_RUN, output, attempt)
        return Escalate(EscalationReason.DRY_RUN, plan, note)
    held = maintenance(plan, attempt, policy, now) or blocked(incident, plan, policy, facts)
    if held is not None:
        return held
    if playbook.approval_required and not approved(incident, attempt):
        deadline = now + timedelta(minutes=playbook.approval_timeout_minutes)
        return AskApproval(plan, attempt, deadline)
    return Start(plan, attempt)


def approved(incident: Incident, attempt: int) -> bool:
    """A person approved this very attempt (an approval is for one attempt only)."""
    return (
        incident.approval_state == ApprovalState.APPROVED and incident.approval_attempt == attempt
    )


def _awaiting(incident: Incident, plan: Plan, facts: Facts) -> Decision | None:
    """An incident awaiting approval came due: None when approved (the rules go on), an
    escalation at the deadline, else wait for it."""
    if incident.approval_state == ApprovalState.APPROVED:
        return None
    deadline = incident.approval_deadline or facts.now
    if facts.now < deadline:
        return Wait(deadline)
    output = f"no decision by {deadline.isoformat()}; nothing was run"
    attempt = incident.approval_attempt or incident.retry_count + 1
    note = Note(HealResult.SKIPPED, LogReason.APPROVAL_TIMEOUT, output, attempt)
    return Escalate(EscalationReason.APPROVAL_TIMEOUT, plan, note)


def _in_store(
    candidates: Sequence[tuple[Incident, Start]], policy: Policy, facts: Facts
) -> list[Decision]:
    """The store rules for a batch of candidates, in order: a quarantined target (or one
    this action would put in quarantine) is escalated; of the rest, the budget grants the
    first units; those the target and cooldown rules hold back hand theirs on to the next
    ones refused, in order."""
    out: dict[int, Decision] = dict(blast_radius(candidates, facts))
    tripped: dict[str, str] = {}  # targets this batch quarantines -> why
    for i, (_, start) in enumerate(candidates):
        if i in out:
            continue
        latched = quarantine(start, policy, facts, tripped)
        if latched is not None:
            out[i] = latched
    free = [c for i, c in enumerate(candidates) if i not in out]
    rest = iter(_budget_and_guards(free, policy, facts))
    return [out[i] if i in out else next(rest) for i in range(len(candidates))]


def _budget_and_guards(
    candidates: Sequence[tuple[Incident, Start]], policy: Policy, facts: Facts
) -> list[Decision]:
    """The budget, then one action per target and the cooldown (see ``_in_store``)."""
    if policy.budget:
        granted = max(0, min(len(candidates), policy.budget - facts.budget_used))
    else:
        granted = len(candidates)
    order = list(range(len(candidates)))
    run, over = order[:granted], order[granted:]
    out: dict[int, Decision] = {}
    busy: set[str] = set()  # targets claimed in this batch
    taken: set[tuple[int, str]] = set()  # (playbook, target) cooldowns started in this batch
    while run:
        seen: set[tuple[int, str]] = set()
        held = 0
        for i in run:
            incident, start = candidates[i]
            d = _target_and_cooldown(incident, start, facts, busy, seen, taken)
            out[i] = d
            held += d is not start
        run, over = over[:held], over[held:]
    for i in over:
        plan = candidates[i][1].plan
        output = (
            f"action budget spent: {policy.budget} per {policy.budget_window_seconds:g}s; "
            f"would run {plan.action_detail}"
        )
        note = Note(HealResult.SKIPPED, LogReason.BUDGET, output)
        out[i] = Escalate(EscalationReason.BUDGET, plan, note, Guard.BUDGET)
    return [out[i] for i in order]


def _target_and_cooldown(
    incident: Incident,
    start: Start,
    facts: Facts,
    busy: set[str],
    seen: set[tuple[int, str]],
    taken: set[tuple[int, str]],
) -> Decision:
    """One action at a time per target (across replicas: the store's locks), then the
    playbook's cooldown on that target. Actions that act on nothing (alert only, wait)
    need no lock. The first candidate for a target claims it for the batch, whatever its
    cooldown says; a (playbook, target) pair is asked once per round."""
    plan, now = start.plan, facts.now
    if plan.exclusive:
        lock = facts.locks.get(plan.target)
        mine = plan.target not in busy and (
            lock is None or lock.at <= now or lock.incident_id == incident.id
        )
        busy.add(plan.target)
        if not mine:
            output = f"another incident is acting on {plan.target}"
            return Defer(plan, Guard.TARGET_BUSY, output, now + BUSY_RETRY)
    cooldown = timedelta(minutes=plan.playbook.cooldown_minutes)
    if not cooldown:
        return start
    pair = (plan.playbook_id, plan.target)
    held = facts.cooldowns.get(pair)
    if pair in seen or pair in taken:  # taken a moment ago in this batch
        free_at: datetime | None = now + cooldown
    elif held is not None and held.at > now - cooldown and held.incident_id != incident.id:
        free_at = held.at + cooldown
    else:
        free_at = None
    seen.add(pair)
    if free_at is not None:
        return _cooling(incident, plan, free_at, cooldown)
    taken.add(pair)
    return start


def _cooling(incident: Incident, plan: Plan, free_at: datetime, cooldown: timedelta) -> Decision:
    output = f"{plan.target} in cooldown for {plan.playbook.name!r} until {free_at.isoformat()}"
    if incident.created_at >= free_at - cooldown:
        # Opened after the repair that started the cooldown: the fault came back. Waiting
        # out the cooldown in silence left it unhandled for up to an hour; people decide.
        note = Note(HealResult.SKIPPED, LogReason.COOLDOWN, output + ": the fault recurred")
        return Escalate(EscalationReason.RECURRED, plan, note, Guard.COOLDOWN)
    # Reported before that repair started (the same outage, seen twice): its repair is
    # under way; look again when the cooldown ends (or its alert resolves).
    return Defer(plan, Guard.COOLDOWN, output, free_at)


def after_action(
    plan: Plan,
    attempt: int,
    ok: bool,
    retryable: bool,
    escalate: EscalationReason | None,
    verify_after: float | None,
    policy: Policy,
    facts: Facts,
) -> AfterAction:
    """What a finished action leads to."""
    if ok and escalate is not None:  # the action itself hands over (alert only)
        return Escalate(escalate)
    if ok:
        window = verify_after
        if window is None:
            window = plan.playbook.verify_seconds
        if window is None:
            window = policy.default_verify_seconds
        return Verify(facts.now + timedelta(seconds=window))
    if not retryable:
        return Escalate(EscalationReason.NOT_RETRYABLE)
    if attempt >= plan.playbook.max_retries:
        return Escalate(EscalationReason.MAX_RETRIES, guard=Guard.MAX_RETRIES)
    return Retry(facts.now + policy.retry_backoff)
