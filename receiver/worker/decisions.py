"""The values the worker's rules decide in, and the facts they decide from.

``decide`` turns a claimed incident and these facts into one ``Decision``; ``apply`` turns a
batch of decisions into the store's writes. Nothing here does I/O: tests build these by hand.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from receiver.alertmanager_api import AlertState
from receiver.config import Settings
from receiver.domain import (
    EscalationReason,
    Guard,
    HealResult,
    IncidentStatus,
    LogReason,
    Paused,
    Quarantined,
    ResolveKind,
)
from receiver.matchers import Matcher
from receiver.playbooks import Playbook
from receiver.timeintervals import Windows
from receiver.worker.plan import Plan

# --- what a rule reads ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Incident:
    """A claimed incident as the rules see it (the stored row stays with the worker)."""

    id: int
    source: str
    status: IncidentStatus
    retry_count: int
    created_at: datetime
    occurrences: int = 1
    fingerprint: str | None = None
    last_seen_at: datetime | None = None
    last_action_at: datetime | None = None
    verify_deadline: datetime | None = None
    playbook_id: int | None = None
    approval_state: str | None = None
    approval_attempt: int | None = None
    approval_deadline: datetime | None = None

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> Incident:
        # Claimable while healing: whoever was healing let the lease expire mid-attempt,
        # which is open again (the interrupted attempt is failed before the rules run).
        status = IncidentStatus(row["status"])
        if status is IncidentStatus.HEALING:
            status = IncidentStatus.OPEN
        return cls(
            id=row["id"],
            source=row["source"],
            status=status,
            retry_count=int(row["retry_count"]),
            created_at=row["created_at"],
            occurrences=int(row["occurrences"]),
            fingerprint=row["fingerprint"],
            last_seen_at=row["last_seen_at"],
            last_action_at=row["last_action_at"],
            verify_deadline=row["verify_deadline"],
            playbook_id=row["playbook_id"],
            approval_state=row["approval_state"],
            approval_attempt=row["approval_attempt"],
            approval_deadline=row["approval_deadline"],
        )


@dataclass(frozen=True, slots=True)
class Case:
    """One incident to decide: its plan (None: no playbook matches), the reason to give
    when its retries are used up, and why nothing matched (for the escalation)."""

    incident: Incident
    plan: Plan | None
    exhausted: EscalationReason = EscalationReason.MAX_RETRIES
    no_match: str | None = None


@dataclass(frozen=True, slots=True)
class Policy:
    """The settings the rules read."""

    dry_run: bool = False
    budget: int = 0  # actions per window across replicas; 0: no budget
    budget_window_seconds: float = 60
    retry_backoff: timedelta = timedelta(seconds=30)
    default_verify_seconds: float = 120
    # The time intervals, and the names that mute (or are the only times for) every action.
    windows: Windows = field(default_factory=Windows)
    quarantine_after: int = 0  # more actions than this on a target in the window: quarantined
    quarantine_window: timedelta = timedelta(hours=1)
    blocked_by: tuple[Matcher, ...] = ()  # alerts that hold every action back
    blocked_fail_open: bool = False  # Alertmanager unreachable: act anyway
    blocked_escalate_after: timedelta = timedelta(minutes=30)
    blocked_recheck: timedelta = timedelta(seconds=30)

    def quarantine_for(self, playbook: Playbook) -> tuple[int, timedelta]:
        """The quarantine limit and window of a playbook's actions (0: none)."""
        brakes = playbook.brakes
        after = brakes.quarantine_after
        minutes = brakes.quarantine_window_minutes
        return (
            self.quarantine_after if after is None else after,
            self.quarantine_window if minutes is None else timedelta(minutes=minutes),
        )

    @classmethod
    def of(cls, settings: Settings) -> Policy:
        return cls(
            dry_run=settings.dry_run,
            budget=settings.action_budget,
            budget_window_seconds=settings.action_budget_window_seconds,
            retry_backoff=timedelta(seconds=settings.retry_backoff_seconds),
            default_verify_seconds=settings.default_verify_seconds,
            windows=settings.windows,
            quarantine_after=settings.quarantine_after,
            quarantine_window=timedelta(minutes=settings.quarantine_window_minutes),
            blocked_by=settings.blocked_matchers,
            blocked_fail_open=settings.blocked_fail_open,
            blocked_escalate_after=timedelta(minutes=settings.blocked_escalate_after_minutes),
            blocked_recheck=timedelta(seconds=settings.blocked_recheck_seconds),
        )


@dataclass(frozen=True, slots=True)
class Held:
    """A guard row in the store: which incident holds it, and since or until when."""

    incident_id: int
    at: datetime


@dataclass(frozen=True, slots=True)
class Facts:
    """What the store says, read for a whole batch before its rules run."""

    now: datetime
    budget_used: int = 0  # actions taken in the budget's current window
    locks: Mapping[str, Held] = field(default_factory=dict)  # target -> holder, until
    cooldowns: Mapping[tuple[int, str], Held] = field(default_factory=dict)  # -> holder, since
    paused: Paused | None = None  # a person paused autoheal: no action starts
    quarantined: Mapping[str, Quarantined] = field(default_factory=dict)  # target -> row
    # target -> when its recent actions started (since its last lift), for the quarantine
    recent: Mapping[str, Sequence[datetime]] = field(default_factory=dict)
    # alert fingerprint -> its firings within the widest occurrence window (min_occurrences)
    firings: Mapping[str, int] = field(default_factory=dict)
    # What Alertmanager said just before the batch (Lookout): per blocked_by matcher set,
    # the (fingerprint, alertname) of the blocking alerts firing, None when no peer answered;
    # per incident that waited, its alert there now (None: no longer active), if asked.
    blocking: Mapping[str, tuple[tuple[str, str], ...] | None] = field(default_factory=dict)
    alerts: Mapping[int, AlertState | None] = field(default_factory=dict)
    # playbook id -> the distinct targets its active incidents name (blast radius)
    engaged: Mapping[int, frozenset[str]] = field(default_factory=dict)
    fleet: Mapping[int, float] = field(default_factory=dict)  # playbook id -> fleet size


# --- what a rule decides ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Note:
    """The heal log a decision that runs nothing leaves behind."""

    result: HealResult
    reason: LogReason
    output: str
    attempt: int | None = None  # None: the incident's retry count


@dataclass(frozen=True, slots=True)
class Start:
    """Run the plan's action: attempt number ``attempt``."""

    plan: Plan
    attempt: int


@dataclass(frozen=True, slots=True)
class Defer:
    """A guard holds the action back for now: look again at ``until``."""

    plan: Plan
    guard: Guard
    output: str
    until: datetime
    wake_at: int | None = None  # or sooner, at this many occurrences (min_occurrences)


@dataclass(frozen=True, slots=True)
class Escalate:
    """Hand the incident to people. ``plan``: the playbook it names and the log it leaves;
    ``guard``: the guard refusal it counts; ``detail``: what people are told beyond the
    reason (why no playbook matched); ``quarantine``: the target it quarantines, and why."""

    reason: EscalationReason
    plan: Plan | None = None
    note: Note | None = None
    guard: Guard | None = None
    detail: str | None = None
    quarantine: str | None = None  # quarantine the plan's target, for this reason
    announce: bool = True  # False: people already know (its target is quarantined)


@dataclass(frozen=True, slots=True)
class AskApproval:
    """Ask a person before attempt ``attempt`` runs; give up at ``deadline``."""

    plan: Plan
    attempt: int
    deadline: datetime


@dataclass(frozen=True, slots=True)
class Wait:
    """Nothing to do before ``until`` (a verify window, a pending approval)."""

    until: datetime


@dataclass(frozen=True, slots=True)
class Resolve:
    """Close the incident; ``note``: the heal log saying why nothing was run."""

    how: ResolveKind
    plan: Plan | None = None
    note: Note | None = None


@dataclass(frozen=True, slots=True)
class NotHeld:
    """A verdict, not a decision: the repair did not hold; plan the next attempt."""


@dataclass(frozen=True, slots=True)
class Verify:
    """After a successful action: watch whether the repair holds until ``deadline``."""

    deadline: datetime


@dataclass(frozen=True, slots=True)
class Retry:
    """After a failed action: open again, the next attempt at ``at``."""

    at: datetime


Decision = Start | Defer | Escalate | AskApproval | Wait | Resolve
Verdict = Resolve | Wait | NotHeld
AfterAction = Verify | Retry | Escalate
