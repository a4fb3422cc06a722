"""The brakes on automatic action (README: Maintenance windows, Quarantine, Blocking alerts,
Re-check before acting, Blast radius, Evidence before acting): what they are set to, and
what is compiled from that once, at start."""

from __future__ import annotations

import re

from pydantic import Field

from receiver.config.base import Group, http_url
from receiver.evidence import DEFAULT_REDACT, compile_patterns
from receiver.matchers import Matcher, parse_matchers
from receiver.timeintervals import TimeIntervalModel, Windows, build_windows


class BrakeSettings(Group):
    # Maintenance windows, in Alertmanager's time_intervals syntax (config file), and the
    # names that hold every playbook's actions back (see README, Maintenance windows).
    time_intervals: list[TimeIntervalModel] = Field(default_factory=list)
    mute_time_intervals: list[str] = Field(default_factory=list)
    active_time_intervals: list[str] = Field(default_factory=list)
    # More actions than this on one target within the window quarantine it until a person
    # lifts it (a restart-loop latch; a playbook may set its own; 0: off).
    quarantine_after: int = Field(default=5, ge=0, le=10_000)
    quarantine_window_minutes: float = Field(default=60, gt=0, le=7 * 24 * 60)
    # Alerts that hold every action back while they fire in Alertmanager (matchers, e.g.
    # 'alertname=~"Deploy.*"'); asked of alertmanager_url. Unreachable: wait (fail closed)
    # unless blocked_fail_open; blocked longer than blocked_escalate_after_minutes: escalate.
    blocked_by: list[str] = Field(default_factory=list)
    blocked_fail_open: bool = False
    blocked_escalate_after_minutes: float = Field(default=30, gt=0, le=7 * 24 * 60)
    blocked_recheck_seconds: float = Field(default=30, gt=0, le=3600)
    # Prometheus, asked the size of a fleet (a playbook's fleet_query, for its blast radius).
    prometheus_url: str | None = None
    # Before acting on an alert's incident that waited, ask Alertmanager whether the alert
    # is still active (not resolved, not silenced by a person meanwhile).
    recheck_alerts: bool = True
    # Evidence before acting: a container's State and last log lines (and a host's
    # diagnostic command) kept in the heal log, bounded and redacted; a capture slower than
    # the timeout keeps what it has and the action runs anyway (README, Evidence).
    evidence: bool = True
    evidence_log_lines: int = Field(default=200, ge=0, le=10_000)
    evidence_log_bytes: int = Field(default=65_536, ge=0, le=1_048_576)
    evidence_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    evidence_redact: list[str] = Field(default_factory=lambda: list(DEFAULT_REDACT))

    def _compile_brakes(self) -> None:
        """Matchers, redaction patterns and time intervals, compiled once (a bad one stops
        start-up naming the setting)."""
        http_url("prometheus_url", self.prometheus_url)
        self._keep("_blocked_by", parse_matchers(self.blocked_by, "blocked_by"))
        self._keep("_evidence_redact", compile_patterns(self.evidence_redact, "evidence_redact"))
        windows = build_windows(
            self.time_intervals, self.mute_time_intervals, self.active_time_intervals
        )
        self._keep("_windows", windows)

    @property
    def blocked_matchers(self) -> tuple[Matcher, ...]:
        kept: tuple[Matcher, ...] = self._kept("_blocked_by")
        return kept

    @property
    def evidence_patterns(self) -> tuple[re.Pattern[str], ...]:
        kept: tuple[re.Pattern[str], ...] = self._kept("_evidence_redact")
        return kept

    @property
    def windows(self) -> Windows:
        """The compiled time intervals and the global mute/active names."""
        kept: Windows = self._kept("_windows")
        return kept
