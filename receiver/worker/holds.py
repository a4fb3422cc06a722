"""Holds (pure): the brakes a person sets or a count trips, each a rule ``decide`` asks of
an action about to start:

- the re-check of an alert's incident that waited (resolved when its alert is gone from
  Alertmanager or a person silenced it);
- a threshold (too few occurrences yet: wait, or resolve when the window passes);
- a pause (every action waits);
- a maintenance window (wait for its end, or escalate);
- a blocking alert firing in Alertmanager (wait, then escalate);
- a quarantined target (escalate; the action that would exceed its limit trips the latch);
- a blast radius (a playbook already acting on its limit of targets: escalate the rest).

A new brake is a function here, asked in ``decide``, and a table of cases in
tests/test_decide.py.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta

from receiver.domain import EscalationReason, Guard, HealResult, LogReason, ResolveKind, Source
from receiver.matchers import matcher_key
from receiver.timeintervals import HORIZON
from receiver.worker.decisions import (
    Decision,
    Defer,
    Escalate,
    Facts,
    Incident,
    Note,
    Policy,
    Resolve,
    Start,
)
from receiver.worker.plan import Plan

# How long an incident held back by a pause without an end waits before it looks again
# (resuming wakes the ones it held back at once; this is the net under it).
PAUSE_RECHECK = timedelta(minutes=15)


def threshold(incident: Incident, plan: Plan, facts: Facts) -> Decision | None:
    """Before its first attempt, an incident whose playbook wants ``min_occurrences`` waits
    for them: until the window from its first occurrence ends (ingest wakes it as soon as the
    count is reached); still short then, it is resolved ``below_threshold`` (a lone 429 is
    not worth a restart; a burst is). A scheduler's occurrences are its reports of the same
    task and signature; an alert's are its firings (incidents of its fingerprint)."""
    brakes, now = plan.playbook.brakes, facts.now
    need = brakes.min_occurrences
    if need <= 1 or incident.retry_count > 0:
        return None
    seen = incident.occurrences
    if incident.source == Source.ALERTMANAGER.value and incident.fingerprint is not None:
        seen = max(seen, facts.firings.get(incident.fingerprint, 1))
    if seen >= need:
        return None
    ends = incident.created_at + timedelta(minutes=brakes.occurrence_window_minutes)
    if now >= ends:
        return Resolve(ResolveKind.BELOW_THRESHOLD)
    output = (
        f"{seen} of {need} occurrences within "
        f"{brakes.occurrence_window_minutes:g} min; waiting until {ends.isoformat()} for the "
        f"rest; would run {plan.action_detail}"
    )
    return Defer(plan, Guard.THRESHOLD, output, ends, wake_at=need)


def paused(start: Start, facts: Facts) -> Decision:
    """While paused every action waits: until the pause's end, or PAUSE_RECHECK."""
    by, now = facts.paused, facts.now
    assert by is not None
    until = now + PAUSE_RECHECK
    if by.until is not None:
        until = min(until, by.until)
    ends = f" until {by.until.isoformat()}" if by.until is not None else ""
    output = f"paused by {by.by}{ends}: {by.reason}; would run {start.plan.action_detail}"
    return Defer(start.plan, Guard.PAUSED, output, until)


def maintenance(plan: Plan, attempt: int, policy: Policy, now: datetime) -> Decision | None:
    """A mute time interval (global or the playbook's) contains now, or active ones are set
    and none does: wait for the window's end, or escalate if the playbook says so. Asked
    before approval: nobody is asked to approve what may not run yet."""
    brakes, windows = plan.playbook.brakes, policy.windows
    mute, active = brakes.mute_time_intervals, brakes.active_time_intervals
    why = windows.holding(now, mute, active)
    if why is None:
        return None
    if brakes.escalate_in_maintenance:
        output = f"{why}; would run {plan.action_detail}"
        note = Note(HealResult.SKIPPED, LogReason.MAINTENANCE, output, attempt)
        return Escalate(EscalationReason.MAINTENANCE, plan, note, Guard.MAINTENANCE)
    ends = windows.held_until(now, mute, active)
    until = ends if ends is not None else now + HORIZON
    said = f"until {ends.isoformat()}" if ends is not None else "no end within 31 days"
    output = f"{why} ({said}); would run {plan.action_detail}"
    return Defer(plan, Guard.MAINTENANCE, output, until)


def quarantine(
    start: Start, policy: Policy, facts: Facts, tripped: dict[str, str]
) -> Escalate | None:
    """More actions on one target within the window than its playbook allows (a restart
    loop, across incidents and playbooks) quarantine it; every later action on it is
    escalated until a person lifts it, without telling people again."""
    plan = start.plan
    target = plan.target
    if not plan.exclusive:
        return None
    held = facts.quarantined.get(target)
    if held is not None or target in tripped:
        why = held.reason if held is not None else tripped[target]
        note = _quarantined(f"{target} is quarantined ({why})", plan)
        return Escalate(EscalationReason.QUARANTINED, plan, note, Guard.QUARANTINE, announce=False)
    after, window = policy.quarantine_for(plan.playbook)
    if not after:
        return None
    since = facts.now - window
    taken = sum(1 for at in facts.recent.get(target, ()) if at >= since)
    if taken < after:
        return None
    why = (
        f"{taken} actions on it in the last {window.total_seconds() / 60:g} min; "
        f"playbook {plan.playbook.name!r} allows {after}"
    )
    tripped[target] = why
    note = _quarantined(f"quarantined {target}: {why}", plan)
    return Escalate(EscalationReason.QUARANTINED, plan, note, Guard.QUARANTINE, quarantine=why)


def _quarantined(head: str, plan: Plan) -> Note:
    output = (
        f"{head}; nothing runs on it until a person lifts it "
        f"(autoheal quarantine lift {plan.target}); would run {plan.action_detail}"
    )
    return Note(HealResult.SKIPPED, LogReason.QUARANTINED, output)


def recheck(incident: Incident, plan: Plan, facts: Facts) -> Decision | None:
    """An alert's incident that waited (back-off, approval, pause, window, busy target) is
    not acted on when Alertmanager, asked just now, no longer holds its alert active, or a
    person silenced it meanwhile: resolved, with a heal log saying so."""
    if incident.id not in facts.alerts:
        return None  # not asked (it did not wait, or Alertmanager did not answer)
    alert = facts.alerts[incident.id]
    if alert is None:
        output = (
            f"its alert is no longer active in Alertmanager; nothing run ({plan.action_detail})"
        )
        note = Note(HealResult.SKIPPED, LogReason.ALERT_GONE, output)
        return Resolve(ResolveKind.ALERT_GONE, plan, note)
    if alert.state == "suppressed" and alert.silenced_by:
        output = (
            f"silenced in Alertmanager meanwhile ({', '.join(alert.silenced_by)}); "
            f"nothing run ({plan.action_detail})"
        )
        note = Note(HealResult.SKIPPED, LogReason.SILENCED, output)
        return Resolve(ResolveKind.SILENCED, plan, note)
    return None


def blocked(incident: Incident, plan: Plan, policy: Policy, facts: Facts) -> Decision | None:
    """While an alert named by blocked_by (the settings' or the playbook's) fires in
    Alertmanager, the action waits; Alertmanager unreachable counts as firing unless the
    settings fail open. Blocked longer than the playbook waits (from the incident's
    start): escalated ``blocked``."""
    why = None
    for matchers in (policy.blocked_by, plan.playbook.brakes.blocked_by):
        if not matchers:
            continue
        key = matcher_key(matchers)
        firing = facts.blocking.get(key)
        if firing is None:
            if not policy.blocked_fail_open:
                why = f"Alertmanager could not be asked whether {key} fires (failing closed)"
                break
            continue
        # The incident's own alert does not block its repair.
        names = sorted({name for fp, name in firing if fp != incident.fingerprint})
        if names:
            shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            why = f"blocked by firing {shown} ({key})"
            break
    if why is None:
        return None
    minutes = plan.playbook.brakes.blocked_escalate_after_minutes
    patience = policy.blocked_escalate_after if minutes is None else timedelta(minutes=minutes)
    output = f"{why}; would run {plan.action_detail}"
    if facts.now - incident.created_at >= patience:
        note = Note(HealResult.SKIPPED, LogReason.BLOCKED, output + f"; waited {patience}")
        return Escalate(EscalationReason.BLOCKED, plan, note, Guard.BLOCKED)
    return Defer(plan, Guard.BLOCKED, output, facts.now + policy.blocked_recheck)


def target_limit(plan: Plan, facts: Facts) -> tuple[int | None, str]:
    """How many distinct targets the plan's playbook may act on at once, and why: its
    max_concurrent_targets, or its fraction of the fleet Prometheus counted, the smaller."""
    brakes = plan.playbook.brakes
    limits: list[tuple[int, str]] = []
    if brakes.max_concurrent_targets:
        n = brakes.max_concurrent_targets
        limits.append((n, f"max_concurrent_targets {n}"))
    size = facts.fleet.get(plan.playbook_id)
    if brakes.max_fleet_fraction and size is not None:
        n = max(1, math.floor(brakes.max_fleet_fraction * size))
        limits.append((n, f"{brakes.max_fleet_fraction:g} of a fleet of {size:g}: {n}"))
    if not limits:
        return None, ""
    return min(limits)


def blast_radius(candidates: Sequence[tuple[Incident, Start]], facts: Facts) -> dict[int, Escalate]:
    """A playbook with ``max_concurrent_targets`` acts on at most that many distinct targets
    at once (its active incidents' targets, then this batch's in order); an action on one
    more is not run: escalated ``blast_radius``. When that many fail together the cause is
    rarely each target (monitoring, or a dependency they share, is broken): people decide.
    Only the first such escalation of a playbook in a batch is announced."""
    out: dict[int, Escalate] = {}
    engaged: dict[int, set[str]] = {}
    told: set[int] = set()
    for i, (_, start) in enumerate(candidates):
        plan = start.plan
        limit, of = target_limit(plan, facts)
        if not limit:
            continue
        known = engaged.setdefault(plan.playbook_id, set(facts.engaged.get(plan.playbook_id, ())))
        if plan.target in known or len(known) < limit:
            known.add(plan.target)
            continue
        output = (
            f"{len(known)} targets of playbook {plan.playbook.name!r} are unhealthy already "
            f"({of}): monitoring or a shared dependency may be broken; not acting on "
            f"{plan.target} ({plan.action_detail})"
        )
        note = Note(HealResult.SKIPPED, LogReason.BLAST_RADIUS, output)
        first = plan.playbook_id not in told
        told.add(plan.playbook_id)
        out[i] = Escalate(
            EscalationReason.BLAST_RADIUS, plan, note, Guard.BLAST_RADIUS, announce=first
        )
    return out
