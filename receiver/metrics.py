"""Prometheus metrics, built against a registry the caller owns (tests use a fresh one).

Counters and histograms count what this process did; the ``store`` gauges are read from the
database at scrape time, so they are true right after a restart and agree whichever replica
is scraped. Label values are bounded: types, reasons, results and playbook names, never
fingerprints, targets or messages.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from sqlalchemy.exc import SQLAlchemyError

from receiver.db import repo
from receiver.db.engine import Database
from receiver.domain import (
    UNRESOLVED_STATUSES,
    ErrorType,
    EscalationReason,
    Guard,
    HealResult,
    Resolved,
    ResolveKind,
    Source,
    VerifyOutcome,
)
from receiver.playbooks import Playbook

_DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
# Opened -> verified resolved: seconds for a restart that held at once, up to hours for a
# wait-and-retry playbook.
_HEAL_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 21600)
NO_PLAYBOOK = "none"
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StoreGauges:
    """Gauges set from the store before each scrape (``refresh``, from ``app.metrics_view``)."""

    incidents: Gauge
    oldest: Gauge
    backlog: Gauge
    backlog_oldest: Gauge
    notifications_pending: Gauge
    paused: Gauge
    quarantined: Gauge

    async def refresh(self, db: Database) -> None:
        """Read them from the store. A store that cannot be read leaves them as they were:
        the scrape still answers, and the readiness probe tells what is wrong."""
        now = datetime.now(UTC)
        try:
            async with db.reading() as conn:
                summary = await repo.status_summary(conn)
                due, earliest = await repo.backlog(conn, now)
                unsent = await repo.outbox.pending(conn)
                paused = await repo.pause.read(conn, now)
                quarantined = await repo.quarantine.count_held(conn)
        except (SQLAlchemyError, OSError) as exc:
            log.warning("metrics: store gauges not refreshed: %s", type(exc).__name__)
            return
        for status in UNRESOLVED_STATUSES:
            count, oldest = summary.get(status.value, (0, None))
            self.incidents.labels(status.value).set(count)
            self.oldest.labels(status.value).set(_age(now, oldest))
        self.backlog.set(due)
        self.backlog_oldest.set(_age(now, earliest))
        self.notifications_pending.set(unsent)
        self.paused.set(1 if paused is not None else 0)
        self.quarantined.set(quarantined)


def _age(now: datetime, since: datetime | None) -> float:
    return max((now - since).total_seconds(), 0.0) if since is not None else 0.0


@dataclass(frozen=True, slots=True)
class Metrics:
    signals: Counter
    incidents_opened: Counter
    incidents_resolved: Counter
    heal_attempts: Counter
    action_duration: Histogram
    time_to_heal: Histogram
    verify_outcomes: Counter
    escalations: Counter
    guard_refusals: Counter
    notifications: Counter
    claims: Counter
    ingest_batch: Histogram
    store: StoreGauges
    playbooks_loaded: Gauge
    truncated_fetched: Counter
    evidence: Counter
    task_run_seconds: Histogram
    task_last_success: Gauge
    task_state: Gauge
    login_failures: Counter
    login_refused: Counter

    def loaded(self, playbooks: Sequence[Playbook]) -> None:
        """A catalog was loaded: count it, and start each playbook's series (attempts, action
        duration, time to heal) at zero, so its first attempt shows as an increase (rate()
        and increase() need a sample before the change)."""
        self.playbooks_loaded.set(len(playbooks))
        for pb in playbooks:
            self.time_to_heal.labels(pb.error_type.value, pb.name)
            for result in (HealResult.SUCCESS, HealResult.FAILED):
                self.heal_attempts.labels(pb.name, pb.action_type, result.value)
                self.action_duration.labels(pb.action_type, result.value)

    def resolved(self, closed: Iterable[Resolved], how: str, names: Mapping[int, str]) -> None:
        """Count incidents a resolve closed; those it healed also give their time to heal
        and a held verification."""
        closed = list(closed)
        if not closed:
            return
        self.incidents_resolved.labels(how).inc(len(closed))
        now = datetime.now(UTC)
        for r in closed:
            if not r.healed:
                continue
            self.verify_outcomes.labels(VerifyOutcome.HELD.value).inc()
            playbook = names.get(r.playbook_id, NO_PLAYBOOK) if r.playbook_id else NO_PLAYBOOK
            seconds = max((now - r.created_at).total_seconds(), 0.0)
            self.time_to_heal.labels(r.error_type, playbook).observe(seconds)


def build_metrics(registry: CollectorRegistry) -> Metrics:
    ns = "autoheal"

    def counter(name: str, doc: str, labels: list[str]) -> Counter:
        return Counter(name, doc, labels, namespace=ns, registry=registry)

    def gauge(name: str, doc: str, labels: list[str] | None = None) -> Gauge:
        return Gauge(name, doc, labels or [], namespace=ns, registry=registry)

    metrics = Metrics(
        signals=counter(
            "signals_received", "Signals received, by source and alert status", ["source", "status"]
        ),
        incidents_opened=counter(
            "incidents_opened", "Incidents opened, by error type", ["error_type"]
        ),
        incidents_resolved=counter(
            "incidents_resolved",
            "Incidents resolved, by how (alert_resolved, alert_cleared, quiet, task_success, "
            "below_threshold, alert_gone, silenced)",
            ["how"],
        ),
        heal_attempts=counter(
            "heal_attempts",
            "Heal attempts, by playbook, action and result "
            "(success, failed, skipped, refused, dry_run)",
            ["playbook", "action", "result"],
        ),
        action_duration=Histogram(
            "action_duration_seconds",
            "Time an action took, by action and result",
            ["action", "result"],
            namespace=ns,
            registry=registry,
            buckets=_DURATION_BUCKETS,
        ),
        time_to_heal=Histogram(
            "time_to_heal_seconds",
            "Incident opened to verified resolved, for incidents a repair healed",
            ["error_type", "playbook"],
            namespace=ns,
            registry=registry,
            buckets=_HEAL_BUCKETS,
        ),
        verify_outcomes=counter(
            "verify_outcomes",
            "Verifications after a successful action: held (resolved) or not_held (still failing)",
            ["outcome"],
        ),
        escalations=counter("escalations", "Incidents escalated, by reason", ["reason"]),
        guard_refusals=counter(
            "guard_refusals",
            "Actions a guard held back, by guard (each hold once, not each recheck of it)",
            ["guard"],
        ),
        evidence=counter(
            "evidence_captures",
            "Evidence captured before an action: complete, or partial (a part failed or timed "
            "out; the action ran anyway)",
            ["result"],
        ),
        notifications=counter(
            "notifications",
            "Outbox rows settled, by channel and result (sent, retry, failed)",
            ["channel", "result"],
        ),
        claims=Counter(
            "worker_claims",
            "Incidents this replica's worker leased (claims per replica: who does the work)",
            namespace=ns,
            registry=registry,
        ),
        ingest_batch=Histogram(
            "ingest_batch_signals",
            "Signals committed per grouped transaction",
            namespace=ns,
            registry=registry,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
        ),
        store=StoreGauges(
            incidents=gauge(
                "incidents",
                "Incidents in the store by status (resolved ones are counted by "
                "autoheal_incidents_resolved_total)",
                ["status"],
            ),
            oldest=gauge(
                "incident_oldest_seconds",
                "Age since its last change of the oldest incident in each status",
                ["status"],
            ),
            backlog=gauge("worker_backlog", "Incidents due now that no worker holds"),
            backlog_oldest=gauge(
                "worker_backlog_oldest_seconds",
                "How long the longest-waiting due incident has waited",
            ),
            notifications_pending=gauge(
                "notifications_pending", "Notifications in the outbox not yet delivered"
            ),
            paused=gauge("paused", "1 while a person has paused autoheal (no action starts)"),
            quarantined=gauge(
                "quarantined_targets",
                "Targets no automatic action touches until a person lifts their quarantine",
            ),
        ),
        playbooks_loaded=gauge("playbooks_loaded", "Playbooks loaded from YAML"),
        task_run_seconds=Histogram(
            "task_run_seconds",
            "Declared tasks' runs, from start ping to success or failure, by task",
            ["task"],
            namespace=ns,
            registry=registry,
            buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 21600, 86400),
        ),
        task_last_success=gauge(
            "task_last_success_timestamp_seconds",
            "When each declared task last ran cleanly (unix time; set by worker replicas)",
            ["task"],
        ),
        task_state=gauge(
            "task_state",
            "Each declared task's state: 1 for the one it is in (ok, late, missed, running, "
            "overrun)",
            ["task", "state"],
        ),
        login_failures=counter(
            "login_failures",
            "Credentials that did not match, by where they were sent (ui: the page's login "
            "form; api: a request's Authorization header)",
            ["via"],
        ),
        login_refused=counter(
            "login_refused",
            "Requests refused (429) because their address had too many failed logins, by via",
            ["via"],
        ),
        truncated_fetched=counter(
            "truncated_alerts_fetched",
            "Alerts a webhook left out (truncatedAlerts), fetched from Alertmanager's API, by "
            "result (fetched, failed: no peer answered)",
            ["result"],
        ),
    )
    # Every bounded label value starts at zero: rules and panels see the first occurrence
    # as an increase, and a dashboard shows the series before anything happened.
    for result in ("fetched", "failed"):
        metrics.truncated_fetched.labels(result)
    for source in Source:
        metrics.signals.labels(source.value, "firing")
    for alerts in (Source.ALERTMANAGER, Source.GRAFANA):
        metrics.signals.labels(alerts.value, "resolved")
        metrics.signals.labels(alerts.value, "ignored")
    for error_type in ErrorType:
        metrics.incidents_opened.labels(error_type.value)
    for reason in EscalationReason:
        metrics.escalations.labels(reason.value)
    for guard in Guard:
        metrics.guard_refusals.labels(guard.value)
    for result in ("complete", "partial"):
        metrics.evidence.labels(result)
    for via in ("ui", "api"):
        metrics.login_failures.labels(via)
        metrics.login_refused.labels(via)
    for how in ResolveKind:
        metrics.incidents_resolved.labels(how.value)
    for outcome in VerifyOutcome:
        metrics.verify_outcomes.labels(outcome.value)
    return metrics
