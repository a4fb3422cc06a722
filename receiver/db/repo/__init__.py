"""Repository functions, one module per table: the connection comes first, the caller owns
the transaction.

The worker's writes are synchronous and take many rows at once (it moves a batch of
incidents in one transaction; async callers use ``run_sync``), so they are reached through
their module: ``repo.incidents.claim(conn, ...)``, ``repo.heal_logs.add(conn, rows)``.
The modules:

- ``ingest``: the batch writer's plan and statements (``multirow``: its SQLite fast path);
- ``incidents``: claims and leases, state changes; ``reports``: what people, gauges and
  the escalator read of them;
- ``heal_logs``: one row per attempt;
- ``playbooks``: YAML synced in by name, counts;
- ``guards``: cooldown, per-target lock and action budget rows; ``pause``: the pause row;
  ``quarantine``: targets no automatic action touches until lifted;
- ``logins``: failed logins by client address (``receiver.lockout``);
- ``outbox``: notifications queued with the state change, claimed and settled by the sender;
- ``task_runs``: a scheduler's runs of its tasks (start, success, failure reports);
- ``knowledge``: heal outcomes per (error type, signature, playbook); ``outcomes`` writes
  them with the notification wherever a repair ends.
"""

from receiver.db.repo import (
    guards,
    heal_logs,
    incidents,
    knowledge,
    logins,
    outbox,
    outcomes,
    pause,
    playbooks,
    quarantine,
    reports,
    retention,
    task_runs,
)
from receiver.db.repo._sql import write_probe
from receiver.db.repo.heal_logs import incident_heal_logs
from receiver.db.repo.incidents import get_incident, next_due, resolve_task
from receiver.db.repo.ingest import IngestOutcome, IngestPlan, ingest, plan_ingest
from receiver.db.repo.playbooks import list_playbooks, sync_playbooks
from receiver.db.repo.reports import backlog, escalations, list_incidents, status_summary

__all__ = [
    "IngestOutcome",
    "IngestPlan",
    "backlog",
    "escalations",
    "get_incident",
    "guards",
    "heal_logs",
    "incident_heal_logs",
    "incidents",
    "ingest",
    "knowledge",
    "list_incidents",
    "list_playbooks",
    "logins",
    "next_due",
    "outbox",
    "outcomes",
    "pause",
    "plan_ingest",
    "playbooks",
    "quarantine",
    "reports",
    "resolve_task",
    "retention",
    "status_summary",
    "sync_playbooks",
    "task_runs",
    "write_probe",
]
