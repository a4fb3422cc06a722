"""Facts: what the store says that the rules decide from, read for a whole batch (one query
per kind of row, for every incident at once): the guard rows (budget spent, target locks,
cooldowns), the quarantine rows and the recent actions of the batch's targets, and how
often the alerts waiting for their min_occurrences fired.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import Connection

from receiver.db import repo
from receiver.domain import Source
from receiver.worker.decisions import Case, Facts, Held, Policy
from receiver.worker.plan import Plan


def read_facts(
    conn: Connection, policy: Policy, facts: Facts, plans: Sequence[Plan], *, budget: bool = True
) -> Facts:
    """``facts`` with the guard rows these plans name and (``budget``) the budget spent in
    this window, as they are now (the rest is kept)."""
    targets = [p.target for p in plans if p.exclusive]
    pairs = [(p.playbook_id, p.target) for p in plans if p.playbook.cooldown_minutes]
    locks = repo.guards.read_locks(conn, targets)
    cooling = repo.guards.read_cooldowns(conn, pairs)
    used = (
        repo.guards.budget_used(conn, facts.now, policy.budget_window_seconds)
        if policy.budget and budget
        else 0
    )
    return dataclasses.replace(
        facts,
        budget_used=used,
        locks={t: Held(*held) for t, held in locks.items()},
        cooldowns={pair: Held(*held) for pair, held in cooling.items()},
    )


def read_engaged(conn: Connection, facts: Facts, plans: Sequence[Plan]) -> Facts:
    """For the playbooks with a blast radius (max_concurrent_targets) among these plans: the
    distinct targets their active incidents already name. Their playbook rows are locked
    first (PostgreSQL), so two replicas deciding for one playbook take turns and cannot
    both let in the last target."""
    limited = sorted({p.playbook_id for p in plans if p.playbook.brakes.limits_targets})
    if not limited:
        return facts
    engaged = repo.incidents.engaged_targets(conn, limited)
    return dataclasses.replace(facts, engaged=engaged)


def read_quarantine(conn: Connection, policy: Policy, facts: Facts, plans: Sequence[Plan]) -> Facts:
    """The facts with the quarantine rows of these plans' targets and, where a limit
    applies, when their recent actions started (since the widest window, or the lift)."""
    limits = {
        p.target: policy.quarantine_for(p.playbook) for p in plans if p.exclusive and p.target
    }
    if not limits:
        return facts
    held, lifted = repo.quarantine.read(conn, list(limits))
    counted = [t for t, (after, _) in limits.items() if after and t not in held]
    recent: dict[str, list[datetime]] = {}
    if counted:
        since = facts.now - max(window for _, window in limits.values())
        recent = repo.quarantine.recent_actions(conn, counted, since)
        for target, at in lifted.items():
            if target in recent:
                recent[target] = [t for t in recent[target] if t >= at]
    return dataclasses.replace(facts, quarantined=held, recent=recent)


def read_firings(conn: Connection, facts: Facts, cases: Sequence[Case]) -> Facts:
    """The facts with how often each alert waiting for its min_occurrences fired within
    the widest of their windows (each firing is an incident)."""
    waiting = [
        (c.incident.fingerprint, c.plan.playbook.brakes.occurrence_window_minutes)
        for c in cases
        if c.plan is not None
        and c.plan.playbook.brakes.min_occurrences > 1
        and c.incident.retry_count == 0
        and c.incident.source == Source.ALERTMANAGER.value
        and c.incident.fingerprint
    ]
    if not waiting:
        return facts
    since = facts.now - timedelta(minutes=max(minutes for _, minutes in waiting))
    found = repo.incidents.firings(conn, [fp for fp, _ in waiting], since)
    return dataclasses.replace(facts, firings=found)
