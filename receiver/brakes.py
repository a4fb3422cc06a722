"""A playbook's brakes: the fields that hold its actions back (Stage 8), in one place.

They sit at the playbook's top level in YAML (``mute_time_intervals: [...]`` beside
``cooldown_minutes``); ``BrakesModel`` is mixed into the playbook's model, ``Brakes`` is what
the rules read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints

from receiver.matchers import Matcher, parse_matchers
from receiver.timeintervals import Name, Windows


class BrakesModel(BaseModel):
    # Names from the settings' time_intervals: no action while one of the mute ones
    # contains now; with active ones, actions only while one does.
    mute_time_intervals: list[Name] = Field(default_factory=list)
    active_time_intervals: list[Name] = Field(default_factory=list)
    # In a maintenance window: wait for its end (then look again), or escalate at once.
    in_maintenance: Literal["wait", "escalate"] = "wait"
    # More actions than this on one target within the window (across incidents and
    # playbooks) quarantine it until a person lifts it; unset: the settings' default; 0: off.
    quarantine_after: int | None = Field(default=None, ge=0, le=10_000)
    quarantine_window_minutes: float | None = Field(default=None, gt=0, le=7 * 24 * 60)
    # Act only once the incident occurred this many times within the window (from its first
    # occurrence); fewer by the window's end: resolved below_threshold, nothing run.
    min_occurrences: int = Field(default=1, ge=1, le=100_000)
    occurrence_window_minutes: float = Field(default=10, gt=0, le=7 * 24 * 60)
    # Alerts (matchers) that hold this playbook's actions back while they fire in
    # Alertmanager, beside the settings' blocked_by; escalate after this long (unset: the
    # settings' blocked_escalate_after_minutes).
    blocked_by: list[Annotated[str, StringConstraints(min_length=1, max_length=500)]] = Field(
        default_factory=list
    )
    blocked_escalate_after_minutes: float | None = Field(default=None, gt=0, le=7 * 24 * 60)
    # At most this many distinct targets unhealthy at once (active incidents) for this
    # playbook: the extra ones are escalated blast_radius, not acted on. Unset: no limit.
    max_concurrent_targets: int | None = Field(default=None, ge=1, le=100_000)
    # Or a fraction of a fleet whose size a PromQL query gives (asked of prometheus_url):
    # at most max(1, floor(fraction x size)) targets; the smaller limit wins.
    fleet_query: Annotated[str, StringConstraints(min_length=1, max_length=2000)] | None = None
    max_fleet_fraction: float | None = Field(default=None, gt=0, le=1)


@dataclass(frozen=True, slots=True)
class Brakes:
    mute_time_intervals: tuple[str, ...] = ()
    active_time_intervals: tuple[str, ...] = ()
    escalate_in_maintenance: bool = False
    quarantine_after: int | None = None  # None: the settings' default
    quarantine_window_minutes: float | None = None
    min_occurrences: int = 1
    occurrence_window_minutes: float = 10
    blocked_by: tuple[Matcher, ...] = ()
    blocked_escalate_after_minutes: float | None = None
    max_concurrent_targets: int | None = None
    fleet_query: str | None = None
    max_fleet_fraction: float | None = None

    @property
    def limits_targets(self) -> bool:
        return bool(self.max_concurrent_targets or self.fleet_query)

    @classmethod
    def of(cls, model: BrakesModel, scope: Mapping[str, Any]) -> Brakes:
        """Validated against the scope's ``windows``: ValueError is (field, message)."""
        windows: Windows = scope.get("windows") or Windows()
        for key in ("mute_time_intervals", "active_time_intervals"):
            missing = windows.unknown(getattr(model, key))
            if missing:
                raise BrakeError(key, f"no time interval named {missing[0]!r} in the settings")
        try:
            blocked_by = parse_matchers(model.blocked_by, "blocked_by")
        except ValueError as exc:
            raise BrakeError("blocked_by", str(exc)) from exc
        if blocked_by and not scope.get("alertmanager"):
            raise BrakeError("blocked_by", "needs alertmanager_url in the settings")
        if (model.fleet_query is None) != (model.max_fleet_fraction is None):
            raise BrakeError("fleet_query", "fleet_query and max_fleet_fraction go together")
        if model.fleet_query is not None and not scope.get("prometheus"):
            raise BrakeError("fleet_query", "needs prometheus_url in the settings")
        return cls(
            fleet_query=model.fleet_query,
            max_fleet_fraction=model.max_fleet_fraction,
            blocked_by=blocked_by,
            blocked_escalate_after_minutes=model.blocked_escalate_after_minutes,
            max_concurrent_targets=model.max_concurrent_targets,
            mute_time_intervals=tuple(model.mute_time_intervals),
            active_time_intervals=tuple(model.active_time_intervals),
            escalate_in_maintenance=model.in_maintenance == "escalate",
            quarantine_after=model.quarantine_after,
            quarantine_window_minutes=model.quarantine_window_minutes,
            min_occurrences=model.min_occurrences,
            occurrence_window_minutes=model.occurrence_window_minutes,
        )

    def definition(self) -> dict[str, Any]:
        return {
            "mute_time_intervals": list(self.mute_time_intervals),
            "active_time_intervals": list(self.active_time_intervals),
            "in_maintenance": "escalate" if self.escalate_in_maintenance else "wait",
            "quarantine_after": self.quarantine_after,
            "quarantine_window_minutes": self.quarantine_window_minutes,
            "min_occurrences": self.min_occurrences,
            "occurrence_window_minutes": self.occurrence_window_minutes,
            "blocked_by": [str(m) for m in self.blocked_by],
            "blocked_escalate_after_minutes": self.blocked_escalate_after_minutes,
            "max_concurrent_targets": self.max_concurrent_targets,
            "fleet_query": self.fleet_query,
            "max_fleet_fraction": self.max_fleet_fraction,
        }


class BrakeError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
