"""Apply: the one place a decision becomes writes (queued on ``Writes``, flushed as a few
multi-row statements) and the metrics and log lines that follow its commit.

``take`` writes the guard rows of the actions that start (budget units, target locks,
cooldowns) and says which of them were already held; ``facts`` reads those rows for the
incidents then decided again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection

from receiver.db import repo
from receiver.domain import (
    ApprovalState,
    EscalationReason,
    Guard,
    HealResult,
    IncidentStatus,
    LogReason,
    NoticeEvent,
)
from receiver.worker.decisions import (
    AfterAction,
    AskApproval,
    Decision,
    Defer,
    Escalate,
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
from receiver.worker.plan import Plan
from receiver.worker.writes import Writes

Row = Mapping[str, Any]


def verdict(w: Writes, row: Row, v: Verdict) -> None:
    if isinstance(v, NotHeld):
        w.effects.tell("verified", row["id"], held=False)
        w.effects.not_held += 1
        if row["playbook_id"] is not None:
            w.outcome(row["id"], row["playbook_id"], ok=False)
    elif isinstance(v, Resolve):
        w.resolve(row)  # a scheduler task that stayed quiet through the window is healed
    else:
        w.update(row["id"], {"next_attempt_at": v.until})
        w.release(row["id"])


def decision(w: Writes, row: Row, d: Decision, lease: timedelta) -> int | None:
    """Queue the writes of one decision; for a ``Start``, the position of its pending heal
    log among the batch's (``flush`` turns it into its id)."""
    incident_id = row["id"]
    if isinstance(d, Start):
        return _start(w, row, d, lease)
    if isinstance(d, Escalate):
        _escalate(w, row, d)
    elif isinstance(d, Defer):
        hold = f"{d.guard.value}: {d.output}"[:500]
        if row.get("hold") != hold:  # a recheck that finds the same hold says nothing new
            w.log(row, d.plan, HealResult.SKIPPED, d.guard.value, d.output)  # the guard names it
            w.effects.refusals[d.guard] += 1
        w.update(
            incident_id,
            {
                "status": IncidentStatus.OPEN.value,
                "playbook_id": d.plan.playbook_id,
                "target": d.plan.target or None,
                "next_attempt_at": d.until,
                "wake_at_occurrences": d.wake_at,
                "hold": hold,
                "updated_at": w.now,
            },
        )
        w.release(incident_id)
    elif isinstance(d, AskApproval):
        _ask(w, row, d)
    elif isinstance(d, Wait):
        w.update(incident_id, {"next_attempt_at": d.until})
        w.release(incident_id)
    else:
        _noted(w, row, d.plan, d.note)
        w.resolve(row, d.how)
    return None


def _start(w: Writes, row: Row, d: Start, lease: timedelta) -> int:
    plan = d.plan
    queued = w.log(row, plan, HealResult.PENDING, attempt=d.attempt)
    w.update(
        row["id"],
        {
            "status": IncidentStatus.HEALING.value,
            "retry_count": d.attempt,
            "playbook_id": plan.playbook_id,
            "target": plan.target,
            "last_action_at": w.now,
            "updated_at": w.now,
            "lease_owner": w.owner,
            "lease_until": w.now + lease,
            "wake_at_occurrences": None,
            "hold": None,
        },
    )
    if w.notify is not None and w.notify.healing:
        w.notice(NoticeEvent.HEALING, row["id"])
    w.effects.tell(
        "action_started",
        row["id"],
        playbook=plan.playbook.name,
        action=plan.action_detail,
        target=plan.target,
        attempt=d.attempt,
    )
    return queued


def _noted(w: Writes, row: Row, plan: Plan | None, note: Note | None) -> None:
    """The heal log a decision that runs nothing leaves, if it names one."""
    if note is not None and plan is not None:
        w.log(row, plan, note.result, note.reason.value, note.output, attempt=note.attempt)


def _escalate(w: Writes, row: Row, d: Escalate) -> None:
    _noted(w, row, d.plan, d.note)
    if d.guard is not None:
        w.effects.refusals[d.guard] += 1
    if d.detail is not None:
        w.update(row["id"], {"escalation_detail": d.detail})
    if d.quarantine is not None and d.plan is not None:
        w.quarantine(row, d.plan, d.quarantine)
    w.update(row["id"], {"hold": None})
    playbook_id = d.plan.playbook_id if d.plan is not None else None
    w.escalate(row, d.reason, playbook_id, announce=d.announce)


def _ask(w: Writes, row: Row, d: AskApproval) -> None:
    """The incident waits for a person's decision on this attempt; people are told."""
    plan = d.plan
    output = f"waiting for approval until {d.deadline.isoformat()}: {plan.action_detail}"
    reason = LogReason.AWAITING_APPROVAL.value
    w.log(row, plan, HealResult.SKIPPED, reason, output, attempt=d.attempt)
    w.effects.refusals[Guard.APPROVAL] += 1
    w.update(
        row["id"],
        {
            "status": IncidentStatus.AWAITING_APPROVAL.value,
            "approval_state": ApprovalState.PENDING.value,
            "approval_attempt": d.attempt,
            "approval_deadline": d.deadline,
            "approval_by": None,
            "playbook_id": plan.playbook_id,
            "target": plan.target,
            "next_attempt_at": d.deadline,
            "hold": None,
            "updated_at": w.now,
        },
    )
    w.release(row["id"])
    w.notice(NoticeEvent.APPROVAL, row["id"])


def take(
    conn: Connection,
    w: Writes,
    policy: Policy,
    hold: timedelta,
    starts: Sequence[tuple[Row, Start]],
) -> list[int]:
    """Take the guard rows the starting actions need: a budget unit each, the target's lock
    (held for ``hold``, so a replica that dies holding it frees the target by itself), the
    (playbook, target) cooldown. The positions in ``starts`` that lost one to another
    replica, or that were taken before this batch looked (the rows are not read first);
    what they took is given back."""
    n = len(starts)
    lost: set[int] = set()
    granted = n
    if policy.budget and n:
        window = policy.budget_window_seconds
        granted = repo.guards.take_budget(conn, w.now, policy.budget, window, n)
        lost.update(range(granted, n))
    at = {row["id"]: i for i, (row, _) in enumerate(starts)}
    exclusive = [
        (s.plan.target, row["id"])
        for i, (row, s) in enumerate(starts)
        if i not in lost and s.plan.exclusive
    ]
    locked = repo.guards.lock_targets(conn, exclusive, w.owner, w.now, hold)
    lost.update(at[i] for _, i in exclusive if i not in locked)
    cooling = [
        (s.plan.playbook_id, s.plan.target, row["id"], timedelta(minutes=cooldown))
        for i, (row, s) in enumerate(starts)
        if i not in lost and (cooldown := s.plan.playbook.cooldown_minutes)
    ]
    refused = repo.guards.take_cooldowns(conn, cooling, w.now)
    lost.update(at[i] for i in refused)
    if refused:
        repo.guards.unlock_targets(
            conn, [(t, i) for t, i in exclusive if i in refused and i in locked]
        )
    if policy.budget:
        spare = sum(1 for i in lost if i < granted)
        repo.guards.refund_budget(conn, w.now, policy.budget_window_seconds, spare)
    return sorted(lost)


def after_action(w: Writes, row: Row, d: AfterAction) -> None:
    """A finished action's next state: only where this replica still holds the incident
    (a resolve may have closed it meanwhile)."""
    if isinstance(d, Escalate):
        if d.guard is not None:
            w.effects.refusals[d.guard] += 1
        w.escalate(row, d.reason)
        return
    if isinstance(d, Verify):
        values = {
            "status": IncidentStatus.VERIFYING.value,
            "verify_deadline": d.deadline,
            "next_attempt_at": d.deadline,
        }
    else:
        assert isinstance(d, Retry)
        values = {"status": IncidentStatus.OPEN.value, "next_attempt_at": d.at}
    w.update_if_held(row["id"], {**values, "updated_at": w.now})


def answered(w: Writes, row: Row, approve: bool, by: str) -> None:
    """A person's decision on the attempt an incident awaits approval for (API or
    Telegram): a heal log naming who; approved, the worker runs it as soon as it looks;
    denied, escalated ``denied``."""
    result = HealResult.APPROVED if approve else HealResult.DENIED
    w.add_log(
        {
            "incident_id": row["id"],
            "playbook_id": row["playbook_id"],
            "action_type": "approval",
            "action_detail": f"approval of attempt {row['approval_attempt']}",
            "target": row["target"],
            "result": result.value,
            "reason": LogReason.APPROVAL.value,
            "result_output": f"{result.value} by {by}",
            "attempt": row["approval_attempt"],
            "created_at": w.now,
            "finished_at": w.now,
        }
    )
    if approve:
        w.update(
            row["id"],
            {
                "approval_state": ApprovalState.APPROVED.value,
                "approval_by": by,
                "next_attempt_at": w.now,
            },
            only_if=IncidentStatus.AWAITING_APPROVAL,
        )
        return
    w.update(row["id"], {"approval_state": ApprovalState.DENIED.value, "approval_by": by})
    w.escalate(row, EscalationReason.DENIED)
