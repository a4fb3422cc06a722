"""What a notification says, and the Protocol every channel implements.

A ``Notice`` is built when the state change commits (from the store, in its transaction) and
kept as JSON in the outbox; a notifier turns one notice, or a storm's worth, into its own
format when the sender delivers it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Protocol

from receiver.domain import EscalationReason

# What each escalation reason means to the person reading the message.
# Each escalation reason in words (keyed by the enum: the names live once, in domain.py; a
# plain string looks up the same entry).
_R = EscalationReason
REASONS: dict[EscalationReason, str] = {
    _R.NO_PLAYBOOK: "no playbook matches it",
    _R.NOT_HEALED: "repairs ran but the fault stayed",
    _R.MAX_RETRIES: "every repair attempt failed",
    _R.ALERT_ONLY: "this fault needs a person",
    _R.DRY_RUN: "dry run: nothing was executed",
    _R.REFUSED: "a label value failed its safety check; nothing was executed",
    _R.NOT_RETRYABLE: "the repair failed in a way retrying cannot fix",
    _R.APPROVAL_TIMEOUT: "nobody approved the repair in time",
    _R.BUDGET: "the action budget was spent (an alert storm?); nothing was executed",
    _R.DENIED: "the repair was denied",
    _R.RECURRED: (
        "the fault came back within the playbook's cooldown after a repair: the repair did not "
        "hold, and repeating it now would be a restart loop"
    ),
    _R.MAINTENANCE: "it came in a maintenance window; nothing was executed",
    _R.BLAST_RADIUS: (
        "more targets of one playbook are unhealthy at once than it may act on: monitoring or "
        "a shared dependency may be broken; nothing was executed on this one"
    ),
    _R.BLOCKED: (
        "an alert that blocks repairs (blocked_by) kept firing, or Alertmanager could not be "
        "asked; nothing was executed"
    ),
    _R.QUARANTINED: (
        "its target took too many actions in a short time (a restart loop?) and is quarantined "
        "until a person lifts it (autoheal quarantine lift TARGET); nothing was executed"
    ),
}


def reason_words(reason: str) -> str:
    """The sentence for a reason as stored (a plain string); an unknown one as it is."""
    try:
        return REASONS[EscalationReason(reason)]
    except ValueError:
        return reason


@dataclass(frozen=True, slots=True)
class Notice:
    event: str
    incident_id: int
    task_name: str
    error_type: str
    severity: str
    status: str
    message: str
    incident_url: str
    target: str | None = None
    playbook: str | None = None
    reason: str | None = None
    # What was done: the last attempt's action and result; for alert_only, its message.
    action: str | None = None
    result: str | None = None
    note: str | None = None
    attempts: int = 0
    time_to_heal_seconds: float | None = None
    generator_url: str | None = None
    approval_attempt: int | None = None  # the attempt an approval request is for
    approval_deadline: str | None = None
    # What the target looked like before the last attempt, in one line (receiver.evidence).
    evidence: str | None = None
    links: dict[str, str] | None = None  # Grafana's dashboard, panel and silence URLs

    def to_json(self) -> dict[str, Any]:
        # ``why``: the reason in words, for receivers that show the JSON as it is.
        return {**asdict(self), "why": reason_words(self.reason) if self.reason else None}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Notice:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


class NotifyError(Exception):
    """A delivery failed. ``retryable``: worth trying again (429, 5xx, network);
    ``retry_after``: how long the channel asked us to wait."""

    def __init__(self, detail: str, *, retryable: bool, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.retryable = retryable
        self.retry_after = retry_after


class Notifier(Protocol):
    """One channel. ``send`` delivers one message for one or several notices (a storm
    summary); it raises NotifyError, never logs a secret."""

    name: ClassVar[str]

    async def send(self, notices: Sequence[Notice]) -> None: ...

    async def close(self) -> None: ...
