"""Facts: what the store says that the rules decide from, read for a whole batch (one query
per kind of row, for every incident at once): the guard rows (budget spent, target locks,
cooldowns), the quarantine rows and the recent actions of the batch's targets, and how
often the alerts waiting for their min_occurrences fired.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from sqlalchemy import Connection

from receiver.db import repo
from receiver.domain import Paused, Quarantined, Source
from receiver.worker.decisions import Case, Facts, Held, Policy
from receiver.worker.plan import Plan


def read_facts(
    conn: Connection,
    policy: Policy,
    now: datetime,
    plans: Sequence[Plan],
    *,
    budget: bool = True,
    paused: Paused | None = None,
    quarantined: Mapping[str, Quarantined] | None = None,
    recent: Mapping[str, Sequence[datetime]] | None = None,
    firings: Mapping[str, int] | None = None,
) -> Facts:
    """The guard rows these plans name, and (``budget``) the budget spent in this window."""
    targets = [p.target for p in plans if p.exclusive]
    pairs = [(p.playbook_id, p.target) for p in plans if p.playbook.cooldown_minutes]
    locks = repo.guards.read_locks(conn, targets)
    cooling = repo.guards.read_cooldowns(conn, pairs)
    used = (
        repo.guards.budget_used(conn, now, policy.budget_window_seconds)
        if policy.budget and budget
        else 0
    )
    return Facts(
        now,
        used,
        {t: Held(*held) for t, held in locks.items()},
        {pair: Held(*held) for pair, held in cooling.items()},
        paused,
        quarantined or {},
        recent or {},
        firings or {},
    )


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
    found = repo.incidents.firings(conn, [fp for fp, _ in waiting if fp], since)
    return dataclasses.replace(facts, firings=found)
