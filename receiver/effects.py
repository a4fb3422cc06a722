"""What a committed transaction tells the metrics and the incident log, gathered while it
runs and told only once it commits (a rolled-back change tells nothing).

The worker's batches, ingest's resolves, the success ping and the approval API each fill
one ``Effects`` and hand it to ``tell`` after their commit: the counters are typed fields,
one per metric, so a new outcome is a field here, not a metric looked up by name.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from receiver import events
from receiver.domain import EscalationReason, Guard, Resolved, ResolveKind, VerifyOutcome
from receiver.metrics import Metrics


@dataclass(slots=True)
class Effects:
    attempts: Counter[tuple[str, str, str]] = field(
        default_factory=Counter
    )  # playbook, action, result
    refusals: Counter[Guard] = field(default_factory=Counter)
    escalations: Counter[EscalationReason] = field(default_factory=Counter)
    not_held: int = 0  # verifications that found the fault still there
    evidence: Counter[str] = field(default_factory=Counter)  # captures: complete, partial
    durations: list[tuple[str, str, float]] = field(default_factory=list)  # action, result, s
    resolved: dict[ResolveKind, list[Resolved]] = field(default_factory=dict)
    story: list[tuple[str, int, dict[str, Any]]] = field(default_factory=list)  # events.tell

    @property
    def escalated(self) -> int:
        return sum(self.escalations.values())

    def tell(self, event: str, incident_id: int, **fields: Any) -> None:
        """A transition to log once the batch commits."""
        self.story.append((event, incident_id, fields))

    def closed(self, how: ResolveKind, resolved: list[Resolved]) -> None:
        """Incidents a resolve closed."""
        if resolved:
            self.resolved.setdefault(how, []).extend(resolved)

    def apply(self, metrics: Metrics, names: Mapping[int, str]) -> None:
        """After the commit: the log lines, then the metrics."""
        for event, incident_id, fields in self.story:
            events.tell(event, incident_id, **fields)
        for how, closed in self.resolved.items():
            events.resolved(closed, how.value)
        for (playbook, action, result), n in self.attempts.items():
            metrics.heal_attempts.labels(playbook, action, result).inc(n)
        for guard, n in self.refusals.items():
            metrics.guard_refusals.labels(guard.value).inc(n)
        for reason, n in self.escalations.items():
            metrics.escalations.labels(reason.value).inc(n)
        for result, n in self.evidence.items():
            metrics.evidence.labels(result).inc(n)
        if self.not_held:
            metrics.verify_outcomes.labels(VerifyOutcome.NOT_HELD.value).inc(self.not_held)
        for action, result, seconds in self.durations:
            metrics.action_duration.labels(action, result).observe(seconds)
        for how, closed in self.resolved.items():
            metrics.resolved(closed, how.value, names)
