"""The ingest batch: signals upserted, incidents opened, attached or resolved."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, case, update
from sqlalchemy.engine import Dialect

from receiver.db.repo._sql import RESOLVABLE, dialect_insert
from receiver.db.repo.incidents import as_resolved, resolved_values, resolving
from receiver.db.repo.multirow import Upsert, prepare, run_upsert, stored
from receiver.db.schema import incidents, signals
from receiver.domain import EscalationReason, IncidentStatus, Resolved, Signal, Source


@dataclass(frozen=True, slots=True)
class IngestOutcome:
    incident_ids: dict[str, int]  # incident key -> id, for the keys this batch touched
    # (incident id, error type, escalated at once for want of a playbook), for new incidents
    opened: list[tuple[int, str, bool]]
    resolved: list[Resolved]


@dataclass(frozen=True, slots=True)
class IngestPlan:
    """Everything a batch writes, prepared before the transaction starts.

    Building rows and driver parameters (JSON encoding included) is pure Python, done on the
    event loop before the writer lock is taken, so the transaction holds the lock only for
    the statements themselves.
    """

    now: datetime
    stored_now: Any  # ``now`` as the driver returns created_at
    unmatched: Mapping[str, str]  # incident key -> what would have made a playbook match
    signals: Upsert
    incidents: list[Upsert]
    resolved_keys: list[str]


def plan_ingest(
    dialect: Dialect,
    batch: Sequence[Signal],
    now: datetime,
    unmatched: Mapping[str, str] | None = None,
) -> IngestPlan:
    """Rows for a batch of signals: one per idempotency key and one per incident key.

    ``unmatched``: incident keys no playbook matches, each with what would have made one
    match (stored as the escalation's detail). They open already escalated
    (``no_playbook``), so an alert storm nobody wrote a playbook for costs the worker nothing;
    they keep their dedup key, so repeats attach instead of opening incident after incident.
    """
    sig_rows: dict[str, dict[str, Any]] = {}
    for s in batch:
        row = sig_rows.get(s.idempotency_key)
        if row is not None:
            row["occurrences"] += 1
            continue
        sig_rows[s.idempotency_key] = {
            "idempotency_key": s.idempotency_key,
            "source": s.source.value,
            "incident_key": s.incident_key,
            "status": "firing" if s.firing else "resolved",
            "fingerprint": s.fingerprint,
            "message": s.message,
            "payload": {"labels": s.labels, "annotations": s.annotations, **s.extra},
            "occurrences": 1,
            "received_at": now,
            "last_received_at": now,
        }
    unmatched = unmatched or {}
    statements = _statements(dialect.name)
    incident_upserts = []
    for source in Source:
        rows = _incident_rows([s for s in batch if s.firing and s.source is source], now, unmatched)
        if rows:
            incident_upserts.append(prepare(dialect, statements.incident_upsert[source], rows))
    return IngestPlan(
        now=now,
        stored_now=stored(dialect, incidents.c.created_at, now),
        unmatched=unmatched,
        signals=prepare(dialect, statements.signal_upsert, list(sig_rows.values())),
        incidents=incident_upserts,
        resolved_keys=[s.incident_key for s in batch if not s.firing],
    )


def ingest(conn: Connection, plan: IngestPlan) -> IngestOutcome:
    """Store signals and open, attach or resolve incidents: a few statements per batch.

    A plain (sync) function: ``Database.run_in_transaction`` decides where it runs (on
    SQLite the event loop or the writer thread, on PostgreSQL ``run_sync``). What its
    resolves and escalations imply (knowledge, notices) the caller writes in the same
    transaction.
    """
    run_upsert(conn, plan.signals)
    ids: dict[str, int] = {}
    opened: list[tuple[int, str, bool]] = []
    for upsert in plan.incidents:
        # RETURNING gives back inserted and updated rows alike; a row this batch inserted
        # carries the batch's own timestamp.
        for inc_id, key, created, error_type in run_upsert(conn, upsert):
            ids[key] = inc_id
            if created == plan.stored_now:
                opened.append((inc_id, error_type, key in plan.unmatched))

    resolved: list[Resolved] = []
    if plan.resolved_keys:
        result = conn.execute(
            resolving(
                update(incidents)
                .where(
                    incidents.c.dedup_key.in_(plan.resolved_keys),
                    incidents.c.status.in_(RESOLVABLE),
                )
                .values(**resolved_values(plan.now))
            )
        )
        resolved = as_resolved(result.all())
        ids.update({r.key: r.id for r in resolved if r.key is not None})
    return IngestOutcome(ids, opened, resolved)


@dataclass(frozen=True, slots=True)
class _Statements:
    signal_upsert: Any
    incident_upsert: Mapping[Source, Any]


@functools.cache
def _statements(dialect: str) -> _Statements:
    """The ingest upserts, built (and on SQLite compiled) once per dialect.

    Incident upserts return (id, dedup key, created_at, error type) of every row they touch.
    """
    insert = dialect_insert(dialect)
    sig = insert(signals)
    signal_upsert = sig.on_conflict_do_update(
        index_elements=[signals.c.idempotency_key],
        set_={
            "occurrences": signals.c.occurrences + sig.excluded.occurrences,
            "last_received_at": sig.excluded.last_received_at,
        },
    )
    upserts = {}
    for source in Source:
        ins = insert(incidents)
        set_: dict[str, Any] = {
            "occurrences": incidents.c.occurrences + ins.excluded.occurrences,
            "last_seen_at": ins.excluded.last_seen_at,
            "updated_at": ins.excluded.updated_at,
        }
        # Waiting for its playbook's min_occurrences, and this occurrence is the one.
        reached = and_(
            incidents.c.status == IncidentStatus.OPEN.value,
            incidents.c.occurrences + ins.excluded.occurrences >= incidents.c.wake_at_occurrences,
        )
        whens: list[Any] = [(reached, ins.excluded.last_seen_at)]
        if source is Source.SCHEDULER:
            # The job failed again while we waited to see if the repair held: judge now.
            whens.append(
                (incidents.c.status == IncidentStatus.VERIFYING.value, ins.excluded.last_seen_at)
            )
        set_["next_attempt_at"] = case(*whens, else_=incidents.c.next_attempt_at)
        upserts[source] = ins.on_conflict_do_update(
            index_elements=[incidents.c.dedup_key], set_=set_
        ).returning(
            incidents.c.id, incidents.c.dedup_key, incidents.c.created_at, incidents.c.error_type
        )
    return _Statements(signal_upsert, upserts)


def _incident_rows(
    batch: Iterable[Signal], now: datetime, unmatched: Mapping[str, str]
) -> list[dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for s in batch:
        row = rows.get(s.incident_key)
        if row is not None:
            row["occurrences"] += 1
            continue
        no_playbook = s.incident_key in unmatched
        rows[s.incident_key] = {
            "dedup_key": s.incident_key,
            "source": s.source.value,
            "task_name": s.task_name,
            "error_type": s.error_type.value,
            "error_message": s.message,
            "error_traceback": s.traceback,
            "severity": s.severity.value,
            "status": (
                IncidentStatus.ESCALATED.value if no_playbook else IncidentStatus.OPEN.value
            ),
            "escalation_reason": EscalationReason.NO_PLAYBOOK.value if no_playbook else None,
            "escalation_detail": unmatched.get(s.incident_key),
            "retry_count": 0,
            "occurrences": 1,
            "fingerprint": s.fingerprint,
            "signature": s.signature,
            "generator_url": str(s.extra.get("generatorURL") or "") or None,
            "links": dict(s.links) or None,
            "labels": dict(s.labels),
            "annotations": dict(s.annotations),
            "next_attempt_at": None if no_playbook else now,
            "starts_at": s.starts_at or s.occurred_at,
            "last_seen_at": now,
            "created_at": now,
            "updated_at": now,
        }
    return list(rows.values())
