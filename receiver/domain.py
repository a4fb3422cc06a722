"""Domain values shared by every layer: frozen, slotted, no I/O."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime


class Severity(enum.StrEnum):
    P1 = "P1"
    P2 = "P2"
    P3 = "P3"

    @property
    def rank(self) -> int:
        """1 is the most urgent."""
        return int(self.value[1])

    def at_least(self, minimum: Severity) -> bool:
        return self.rank <= minimum.rank


# Alertmanager's conventional severities, mapped onto the seed's P1-P3.
_SEVERITY_ALIASES = {
    "p1": Severity.P1,
    "critical": Severity.P1,
    "page": Severity.P1,
    "high": Severity.P1,
    "error": Severity.P2,
    "p2": Severity.P2,
    "warning": Severity.P2,
    "warn": Severity.P2,
    "major": Severity.P2,
    "p3": Severity.P3,
    "info": Severity.P3,
    "minor": Severity.P3,
    "low": Severity.P3,
    "none": Severity.P3,
}


def parse_severity(value: str | None, default: Severity = Severity.P2) -> Severity:
    """Map P1-P3 and critical/warning/info (any case) onto Severity; unknown gives default."""
    if not value:
        return default
    return _SEVERITY_ALIASES.get(value.strip().lower(), default)


def strict_severity(value: str) -> Severity:
    """Like parse_severity, but an unknown word is an error (for playbooks)."""
    sev = _SEVERITY_ALIASES.get(value.strip().lower())
    if sev is None:
        raise ValueError(f"unknown severity {value!r}: use P1-P3 or critical/warning/info")
    return sev


class ErrorType(enum.StrEnum):
    DNS_FAIL = "DNS_FAIL"
    DB_UNREACHABLE = "DB_UNREACHABLE"
    OOM = "OOM"
    SSL_FAIL = "SSL_FAIL"
    AUTH_FAIL = "AUTH_FAIL"
    CRAWLER_FAIL = "CRAWLER_FAIL"
    DISK_FULL = "DISK_FULL"
    TIMEOUT = "TIMEOUT"
    # A scheduler's run that did not happen when due, or did not finish in its time.
    MISSED_RUN = "MISSED_RUN"
    RUN_TOO_LONG = "RUN_TOO_LONG"
    UNKNOWN = "UNKNOWN"


class Source(enum.StrEnum):
    ALERTMANAGER = "alertmanager"
    SCHEDULER = "scheduler"
    # Grafana-managed alerts (its webhook contact point): alerts like Alertmanager's, but
    # not in the Alertmanager autoheal asks (no re-check, no verify by asking).
    GRAFANA = "grafana"


class IncidentStatus(enum.StrEnum):
    OPEN = "open"
    HEALING = "healing"
    VERIFYING = "verifying"
    AWAITING_APPROVAL = "awaiting_approval"  # a risky repair waits for a person
    RESOLVED = "resolved"
    ESCALATED = "escalated"


ACTIVE_STATUSES = (
    IncidentStatus.OPEN,
    IncidentStatus.HEALING,
    IncidentStatus.VERIFYING,
    IncidentStatus.AWAITING_APPROVAL,
)
# Not yet resolved: what a resolve may close, and what the incidents gauge counts.
UNRESOLVED_STATUSES = (*ACTIVE_STATUSES, IncidentStatus.ESCALATED)


class HealResult(enum.StrEnum):
    PENDING = "pending"
    SUCCESS = "success"
    FAILED = "failed"
    SKIPPED = "skipped"
    REFUSED = "refused"
    DRY_RUN = "dry_run"
    APPROVED = "approved"  # a person's decision, with who in the output
    DENIED = "denied"


# The alert autoheal posts to Alertmanager for an escalated incident. Routed back to
# autoheal, it is acknowledged and ignored: autoheal never tries to heal its own escalation.
ESCALATION_ALERTNAME = "AutoHealEscalated"


class EscalationReason(enum.StrEnum):
    NO_PLAYBOOK = "no_playbook"
    MAX_RETRIES = "max_retries"  # the action kept failing
    NOT_HEALED = "not_healed"  # the action ran, but the fault was back or still there, each time
    ALERT_ONLY = "alert_only"
    DRY_RUN = "dry_run"
    REFUSED = "refused"
    NOT_RETRYABLE = "not_retryable"
    APPROVAL_TIMEOUT = "approval_timeout"
    BUDGET = "budget"  # the global action budget for the window was spent
    DENIED = "denied"
    # The fault came back within the cooldown of the playbook that repaired its target: the
    # repair did not hold, and repeating it at once is the restart loop cooldowns prevent.
    RECURRED = "recurred"
    # The action fell in a maintenance window and its playbook says escalate, not wait.
    MAINTENANCE = "maintenance"
    # Its target took too many actions in the window (a restart loop), or is quarantined.
    QUARANTINED = "quarantined"
    # More distinct targets of one playbook unhealthy at once than it may act on: monitoring
    # or a shared dependency may be broken.
    BLAST_RADIUS = "blast_radius"
    # An alert named by blocked_by fired for longer than the playbook waits (or Alertmanager
    # could not be asked, failing closed).
    BLOCKED = "blocked"


class NoticeEvent(enum.StrEnum):
    """What a notification announces (the outbox's ``event``)."""

    ESCALATED = "escalated"
    RESOLVED = "resolved"  # after a heal
    HEALING = "healing"  # an action started (optional)
    APPROVAL = "approval"  # a risky repair waits for a person
    # About autoheal itself, not an incident (incident_id 0 in the notice):
    PAUSED = "paused"  # a person paused every action
    RESUMED = "resumed"


class ApprovalState(enum.StrEnum):
    """A person's decision on the attempt an incident awaits approval for."""

    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"


class OutboxState(enum.StrEnum):
    PENDING = "pending"  # to deliver (again, after ``next_attempt_at``)
    SENT = "sent"
    FAILED = "failed"  # for good: the channel refused it in a way a retry cannot fix


class Guard(enum.StrEnum):
    """A rule that held an action back (the ``guard`` label of guard_refusals)."""

    PAUSED = "paused"  # a person paused autoheal: no action starts anywhere
    SLOT = "slot"  # a templated value failed its slot's pattern
    MAX_RETRIES = "max_retries"
    TARGET_BUSY = "target_busy"  # another incident is acting on the same target
    COOLDOWN = "cooldown"  # the (playbook, target) acted on recently
    APPROVAL = "approval"  # waits for a person
    BUDGET = "budget"  # the global action budget for the window was spent
    MAINTENANCE = "maintenance"  # a mute time interval, or outside the active ones
    QUARANTINE = "quarantine"  # the target is quarantined (too many actions in a window)
    THRESHOLD = "threshold"  # fewer occurrences than the playbook's min_occurrences so far
    BLOCKED = "blocked"  # a blocking alert fires in Alertmanager (or it cannot be asked)
    BLAST_RADIUS = "blast_radius"  # its playbook is already acting on its limit of targets


class LogReason(enum.StrEnum):
    """Why a heal log is not a plain success or failure (its ``reason`` column)."""

    PAUSED = "paused"
    MAINTENANCE = "maintenance"
    QUARANTINED = "quarantined"
    THRESHOLD = "threshold"
    BLOCKED = "blocked"
    BLAST_RADIUS = "blast_radius"
    ALERT_GONE = "alert_gone"  # re-checked after a wait: no longer active in Alertmanager
    SILENCED = "silenced"  # re-checked after a wait: a person silenced it meanwhile
    SLOT_REFUSED = "slot_refused"
    DRY_RUN = "dry_run"
    AWAITING_APPROVAL = "awaiting_approval"
    APPROVAL_TIMEOUT = "approval_timeout"
    BUDGET = "budget"
    COOLDOWN = "cooldown"
    TARGET_BUSY = "target_busy"
    NOT_RETRYABLE = "not_retryable"
    INTERRUPTED = "interrupted"  # the lease ran out mid-attempt (a crash, a stall)
    APPROVAL = "approval"  # a person's decision (result approved or denied)


class VerifyOutcome(enum.StrEnum):
    """What verification found after a successful action (verify_outcomes' label)."""

    HELD = "held"  # resolved within the window
    NOT_HELD = "not_held"  # still failing at its end, or failed again


class RunOutcome(enum.StrEnum):
    """Where a scheduler's run of a task stands (task_runs.outcome)."""

    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"


class ResolveKind(enum.StrEnum):
    """How an incident came to be resolved (the ``how`` label of incidents_resolved)."""

    ALERT_RESOLVED = "alert_resolved"  # Alertmanager sent the resolve
    # Asked while verifying: Alertmanager no longer holds the alert (before its resolve
    # notification, which waits for the group's next group_interval, or never comes when
    # the alert is silenced).
    ALERT_CLEARED = "alert_cleared"
    QUIET = "quiet"  # a scheduler task stayed quiet through its verify window
    TASK_SUCCESS = "task_success"  # the scheduler's success ping
    TASK_STARTED = "task_started"  # a start ping: the missed run's task runs again
    # It did not occur min_occurrences times within its playbook's window: nothing was run.
    BELOW_THRESHOLD = "below_threshold"
    # Re-checked before acting after a wait: Alertmanager no longer holds the alert active,
    # or a person silenced it. Nothing was run.
    ALERT_GONE = "alert_gone"
    SILENCED = "silenced"


@dataclass(frozen=True, slots=True)
class Paused:
    """autoheal is paused: no action starts on any replica until it is resumed (or
    ``until``, if set, passes). Incidents are still recorded; they wait."""

    reason: str
    by: str
    at: datetime
    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class Quarantined:
    """A target no automatic action touches until a person lifts it: it took more actions
    in a window than its playbook allows (a restart loop)."""

    target: str
    since: datetime
    reason: str
    incident_id: int | None = None


@dataclass(frozen=True, slots=True)
class Resolved:
    """An incident a resolve just closed: what time-to-heal and verify outcomes are made of."""

    id: int
    key: str | None
    error_type: str
    playbook_id: int | None
    healed: bool
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Signal:
    """One normalised input: an alert of a group, or one scheduler exception report.

    Everything downstream reads labels and text from here, never the raw payload.
    """

    source: Source
    idempotency_key: str
    incident_key: str
    firing: bool
    task_name: str
    error_type: ErrorType
    severity: Severity
    message: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str] = field(default_factory=dict)
    traceback: str | None = None
    fingerprint: str | None = None
    signature: str | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    occurred_at: datetime | None = None
    extra: Mapping[str, object] = field(default_factory=dict)
    # Where people look further (Grafana's dashboard, panel, silence links), by name.
    links: Mapping[str, str] = field(default_factory=dict)

    @property
    def match_text(self) -> str:
        """The text playbook patterns and classifier rules search."""
        parts = [self.message, *self.annotations.values()]
        if self.traceback:
            parts.append(self.traceback)
        return "\n".join(p for p in parts if p)
