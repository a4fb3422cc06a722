"""Guards, checked in order before an action may run: the slot check, max retries, dry run,
a person's approval (when the playbook requires one), then in the store, for the whole
batch at once: the global action budget, one action per target, cooldown per (playbook,
target).

``check`` is per incident and needs no store. ``in_store`` takes the batch's budget units,
target locks and cooldowns with a few multi-row statements; a unit taken for an action that
a later guard holds back goes to the next incident the budget refused, or back to the store.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from receiver.actions import ACTIONS
from receiver.config import Settings
from receiver.db import repo
from receiver.domain import EscalationReason, HealResult
from receiver.errors import SlotError
from receiver.worker import approval
from receiver.worker.plan import Plan
from receiver.worker.writes import Writes

# How soon an incident held back by another one acting on its target looks again.
BUSY_RETRY = timedelta(seconds=2)


@dataclass(frozen=True, slots=True)
class Candidate:
    """An incident whose action passed the checks that need no store."""

    row: dict[str, Any]
    plan: Plan
    attempt: int


def check(
    w: Writes,
    settings: Settings,
    row: dict[str, Any],
    plan: Plan,
    exhausted: EscalationReason = EscalationReason.MAX_RETRIES,
) -> Candidate | None:
    """The candidate if the store guards may be asked, else None (the refusal is queued).
    ``exhausted``: the reason to give when retries are used up (``not_healed`` when the last
    repair ran but did not hold)."""
    playbook = plan.playbook
    if isinstance(plan.params, SlotError):
        w.log(row, plan, HealResult.REFUSED, "slot_refused", str(plan.params))
        w.effects.count("guard_refusals", "slot")
        w.escalate(row, EscalationReason.REFUSED, plan.playbook_id)
        return None
    if row["retry_count"] >= playbook.max_retries:
        w.effects.count("guard_refusals", "max_retries")
        w.escalate(row, exhausted, plan.playbook_id)
        return None
    attempt = int(row["retry_count"]) + 1
    if settings.dry_run or playbook.dry_run:
        output = f"dry run: would run {plan.action_detail}"
        w.log(row, plan, HealResult.DRY_RUN, "dry_run", output, attempt=attempt)
        w.escalate(row, EscalationReason.DRY_RUN, plan.playbook_id)
        return None
    if playbook.approval_required and not approval.approved(row, attempt):
        approval.request(w, row, plan, attempt)
        return None
    return Candidate(row, plan, attempt)


def in_store(
    conn: Connection, w: Writes, settings: Settings, candidates: Sequence[Candidate]
) -> list[Candidate]:
    """The candidates whose actions may run now; the others' refusals are queued."""
    budget = settings.action_budget
    window = settings.action_budget_window_seconds
    granted = (
        repo.guards.take_budget(conn, w.now, budget, window, len(candidates))
        if budget
        else len(candidates)
    )
    run, over = list(candidates[:granted]), list(candidates[granted:])
    passed: list[Candidate] = []
    busy: set[str] = set()  # targets taken in this batch
    spare = 0
    while run:
        ok = _target_and_cooldown(conn, w, settings, run, busy)
        passed.extend(ok)
        # The units of those held back go to those the budget refused, in order.
        freed = len(run) - len(ok)
        run, over = over[:freed], over[freed:]
        spare += freed - len(run)
    if budget:
        repo.guards.refund_budget(conn, w.now, window, spare)
    for c in over:
        output = f"action budget spent: {budget} per {window:g}s; would run {c.plan.action_detail}"
        w.log(c.row, c.plan, HealResult.SKIPPED, "budget", output)
        w.effects.count("guard_refusals", "budget")
        w.escalate(c.row, EscalationReason.BUDGET, c.plan.playbook_id)
    return passed


def _target_and_cooldown(
    conn: Connection,
    w: Writes,
    settings: Settings,
    run: Sequence[Candidate],
    busy: set[str],
) -> list[Candidate]:
    # One action at a time per target, across replicas; held past the action timeout so a
    # replica that dies holding it frees the target by itself. Actions that act on nothing
    # (alert only, wait) need no lock.
    hold = timedelta(seconds=settings.action_timeout_seconds + 30)
    wanted: dict[int, Candidate] = {}
    exclusive: list[tuple[str, int]] = []  # (target, incident) for the locks to take
    for c in run:
        if not ACTIONS[c.plan.playbook.action_type].exclusive:
            wanted[c.row["id"]] = c
        elif c.plan.target in busy:
            _busy(w, c)
        else:
            busy.add(c.plan.target)
            wanted[c.row["id"]] = c
            exclusive.append((c.plan.target, c.row["id"]))
    locked = repo.guards.lock_targets(conn, exclusive, w.owner, w.now, hold)
    for _, i in exclusive:
        if i not in locked:
            _busy(w, wanted.pop(i))
    cooling: list[tuple[int, str, int, timedelta]] = []
    refused: dict[int, datetime] = {}
    pairs: set[tuple[int, str]] = set()
    for i, c in wanted.items():
        cooldown = timedelta(minutes=c.plan.playbook.cooldown_minutes)
        if not cooldown:
            continue  # no cooldown: nothing to take
        pair = (c.plan.playbook_id, c.plan.target)
        if pair in pairs:  # taken a moment ago in this batch (an action on nothing)
            refused[i] = w.now + cooldown
        else:
            pairs.add(pair)
            cooling.append((*pair, i, cooldown))
    refused.update(repo.guards.take_cooldowns(conn, cooling, w.now))
    for i, free_at in refused.items():
        c = wanted.pop(i)
        if i in locked:
            w.unlock(c.plan.target, i)
        output = (
            f"{c.plan.target} in cooldown for {c.plan.playbook.name!r} until {free_at.isoformat()}"
        )
        since = free_at - timedelta(minutes=c.plan.playbook.cooldown_minutes)
        if c.row["created_at"] >= since:
            # Opened after the repair that started the cooldown: the fault came back. Waiting
            # out the cooldown in silence left it unhandled for up to an hour; people decide.
            w.log(c.row, c.plan, HealResult.SKIPPED, "cooldown", output + ": the fault recurred")
            w.effects.count("guard_refusals", "cooldown")
            w.escalate(c.row, EscalationReason.RECURRED, c.plan.playbook_id)
        else:
            # Reported before that repair started (the same outage, seen twice): its repair
            # is under way; look again when the cooldown ends (or its alert resolves).
            w.defer(c.row, c.plan, "cooldown", output, free_at)
    return list(wanted.values())


def _busy(w: Writes, c: Candidate) -> None:
    output = f"another incident is acting on {c.plan.target}"
    w.defer(c.row, c.plan, "target_busy", output, w.now + BUSY_RETRY)
