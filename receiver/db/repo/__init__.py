"""Repository functions, one module per table: the connection comes first, the caller owns
the transaction.

``repo.claim(conn, ...)`` reads the same wherever a function lives; the modules say where:

- ``ingest``: the batch writer's plan and statements (``multirow``: its SQLite fast path);
- ``incidents``: claims and leases, state changes, queries;
- ``heal_logs``: one row per attempt;
- ``playbooks``: YAML synced in by name, counts;
- ``guards``: cooldown and per-target lock rows;
- ``outbox``: notifications queued with the state change, claimed and settled by the sender;
- ``knowledge``: heal outcomes per (error type, signature, playbook); ``outcomes`` writes
  them with the notification wherever a repair ends.
"""

from receiver.db.repo import knowledge, outbox, outcomes, retention
from receiver.db.repo.guards import (
    lock_target,
    refund_budget,
    take_budget,
    take_cooldown,
    unlock_target,
)
from receiver.db.repo.heal_logs import (
    add_heal_log,
    fail_interrupted,
    finish_heal_log,
    incident_heal_logs,
)
from receiver.db.repo.incidents import (
    backlog,
    claim,
    escalate,
    escalations,
    get_incident,
    list_incidents,
    next_due,
    release,
    resolve,
    resolve_task,
    status_summary,
    update_incident,
)
from receiver.db.repo.ingest import IngestOutcome, IngestPlan, ingest, plan_ingest
from receiver.db.repo.playbooks import count_playbook, list_playbooks, sync_playbooks

__all__ = [
    "IngestOutcome",
    "IngestPlan",
    "add_heal_log",
    "backlog",
    "claim",
    "count_playbook",
    "escalate",
    "escalations",
    "fail_interrupted",
    "finish_heal_log",
    "get_incident",
    "incident_heal_logs",
    "ingest",
    "knowledge",
    "list_incidents",
    "list_playbooks",
    "lock_target",
    "next_due",
    "outbox",
    "outcomes",
    "plan_ingest",
    "refund_budget",
    "release",
    "resolve",
    "resolve_task",
    "retention",
    "status_summary",
    "sync_playbooks",
    "take_budget",
    "take_cooldown",
    "unlock_target",
    "update_incident",
]
