"""Prometheus metrics, built against a registry the caller owns (tests use a fresh one)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


@dataclass(frozen=True, slots=True)
class Metrics:
    signals: Counter
    incidents_opened: Counter
    incidents_resolved: Counter
    heal_attempts: Counter
    action_duration: Histogram
    escalations: Counter
    guard_refusals: Counter
    ingest_batch: Histogram
    active_incidents: Gauge
    playbooks_loaded: Gauge


def build_metrics(registry: CollectorRegistry) -> Metrics:
    ns = "autoheal"
    return Metrics(
        signals=Counter(
            "signals_received",
            "Signals received, by source and alert status",
            ["source", "status"],
            namespace=ns,
            registry=registry,
        ),
        incidents_opened=Counter(
            "incidents_opened",
            "Incidents opened, by error type",
            ["error_type"],
            namespace=ns,
            registry=registry,
        ),
        incidents_resolved=Counter(
            "incidents_resolved",
            "Incidents resolved, by how (alert_resolved, quiet, task_success)",
            ["how"],
            namespace=ns,
            registry=registry,
        ),
        heal_attempts=Counter(
            "heal_attempts",
            "Heal attempts, by playbook, action and result",
            ["playbook", "action", "result"],
            namespace=ns,
            registry=registry,
        ),
        action_duration=Histogram(
            "action_duration_seconds",
            "Time an action took, by action and result",
            ["action", "result"],
            namespace=ns,
            registry=registry,
            buckets=_DURATION_BUCKETS,
        ),
        escalations=Counter(
            "escalations",
            "Incidents escalated, by reason",
            ["reason"],
            namespace=ns,
            registry=registry,
        ),
        guard_refusals=Counter(
            "guard_refusals",
            "Actions a guard held back, by guard",
            ["guard"],
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
        active_incidents=Gauge(
            "incidents_active",
            "Incidents not yet resolved or escalated, by status",
            ["status"],
            namespace=ns,
            registry=registry,
        ),
        playbooks_loaded=Gauge(
            "playbooks_loaded",
            "Playbooks loaded from YAML",
            namespace=ns,
            registry=registry,
        ),
    )
