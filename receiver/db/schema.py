"""Tables. The seed's incidents / playbooks / heal_logs keep their field names; the columns
added here (dedup keys, leases, deadlines, cooldown rows) are what lets several replicas share
the work through the database alone."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]
        return value.astimezone(UTC)  # type: ignore[no-any-return]

    # SQLite: one step each way instead of this type's and then the dialect's processor
    # (the text is exactly the dialect's own storage format). Every worker and ingest row
    # carries several datetimes; under an alert storm the two steps were ~5 % of the CPU.
    def bind_processor(self, dialect: Dialect) -> Any:
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        # A batch binds the same moment many times over (created_at, updated_at, ...):
        # remember the last one. One tuple, swapped whole, as the loop and the writer thread
        # share it.
        last: tuple[datetime | None, str | None] = (None, None)

        def process(value: datetime | None) -> str | None:
            nonlocal last
            if value is None:
                return None
            seen, text = last
            if value is seen:
                return text
            if value.tzinfo is None:
                raise ValueError("naive datetime given to the store")
            text = value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
            last = (value, text)
            return text

        return process

    def result_processor(self, dialect: Dialect, coltype: Any) -> Any:
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)

        def process(value: str | None) -> datetime | None:
            return None if value is None else datetime.fromisoformat(value).replace(tzinfo=UTC)

        return process


def _now_col(name: str, **kw: Any) -> Column[datetime]:
    return Column(name, UTCDateTime(), nullable=False, **kw)


playbooks = Table(
    "playbooks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("error_type", String(50), nullable=False, index=True),
    Column("match_pattern", JSON, nullable=False),
    Column("severity_min", String(2), nullable=False, default="P3"),
    Column("action_type", String(50), nullable=False),
    Column("action_params", JSON, nullable=False),
    Column("cooldown_min", Float, nullable=False, default=30),
    Column("max_retries", Integer, nullable=False, default=3),
    Column("is_active", Boolean, nullable=False, default=True, index=True),
    Column("success_count", Integer, nullable=False, default=0),
    Column("fail_count", Integer, nullable=False, default=0),
    Column("km_synced", Boolean, nullable=False, default=False),
    Column("definition", JSON, nullable=False),
    Column("digest", String(64), nullable=False),
    Column("file", String(255), nullable=False, default=""),
    _now_col("created_at"),
    _now_col("updated_at"),
)

incidents = Table(
    "incidents",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # Unique while it dedups: an alert keeps it for good (fingerprint + startsAt), a scheduler
    # incident gives it up (NULL) when it ends so the next failure opens a new incident.
    Column("dedup_key", String(300), nullable=True, unique=True),
    Column("source", String(20), nullable=False),
    # task_name and status are indexed as the leading columns of the composite indexes below;
    # every index costs each insert a page write, and ingest is insert-heavy.
    Column("task_name", String(100), nullable=False),
    Column("error_type", String(50), nullable=False, index=True),
    Column("error_message", Text, nullable=False),
    Column("error_traceback", Text, nullable=True),
    Column("severity", String(2), nullable=False, default="P2"),
    Column("status", String(20), nullable=False),
    Column("playbook_id", Integer, ForeignKey("playbooks.id"), nullable=True),
    Column("retry_count", Integer, nullable=False, default=0),
    Column("occurrences", Integer, nullable=False, default=1),
    # Waiting for its playbook's min_occurrences: ingest makes it due when it reaches this.
    Column("wake_at_occurrences", Integer, nullable=True),
    Column("fingerprint", String(128), nullable=True),
    Column("signature", String(64), nullable=True),
    Column("labels", JSON, nullable=False),
    Column("annotations", JSON, nullable=False),
    Column("target", String(300), nullable=True),
    Column("escalation_reason", String(50), nullable=True),
    Column("escalation_detail", Text, nullable=True),  # what would have helped, in words
    # The guard holding the action back and what it said, as last logged: a recheck that
    # finds the same hold (a blocking alert still firing) logs and counts nothing new.
    Column("hold", String(500), nullable=True),
    Column("next_attempt_at", UTCDateTime(), nullable=True),
    Column("verify_deadline", UTCDateTime(), nullable=True),
    Column("lease_owner", String(100), nullable=True),
    Column("lease_until", UTCDateTime(), nullable=True),
    Column("starts_at", UTCDateTime(), nullable=True),
    _now_col("last_seen_at"),
    Column("last_action_at", UTCDateTime(), nullable=True),
    Column("resolved_at", UTCDateTime(), nullable=True),
    # An approval request for attempt ``approval_attempt``: pending, approved or denied, by
    # whom, and until when a decision is awaited.
    Column("approval_state", String(10), nullable=True),
    Column("approval_attempt", Integer, nullable=True),
    Column("approval_deadline", UTCDateTime(), nullable=True),
    Column("approval_by", String(200), nullable=True),
    # The alert's link back to its source (Prometheus graph), for messages to people.
    Column("generator_url", Text, nullable=True),
    # More links than the generator's: Grafana's dashboard, panel and silence URLs.
    Column("links", JSON(none_as_null=True), nullable=True),
    # Set when it resolves: true if it was healing or verifying then (a repair held), false
    # if it cleared before any repair ran or after escalation.
    Column("healed", Boolean, nullable=True),
    _now_col("created_at"),
    _now_col("updated_at"),
    Index("ix_incidents_status_created_at", "status", "created_at"),
    Index("ix_incidents_task_name_error_type", "task_name", "error_type"),
    # A target's history on the page for people (and its count of engaged incidents).
    Index("ix_incidents_target", "target"),
    # Only active incidents have a next attempt: the claim walks this in order and stops.
    # Partial on both stores (migration 0009 says so for PostgreSQL too); declaring
    # postgresql_where here would load the PostgreSQL dialect into every SQLite process.
    Index(
        "ix_incidents_due",
        "next_attempt_at",
        "id",
        sqlite_where=text("next_attempt_at IS NOT NULL"),
    ),
)

heal_logs = Table(
    "heal_logs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("incident_id", Integer, ForeignKey("incidents.id"), nullable=False, index=True),
    Column("playbook_id", Integer, ForeignKey("playbooks.id"), nullable=True),
    Column("action_type", String(50), nullable=False),
    Column("action_detail", Text, nullable=False),
    Column("target", String(300), nullable=True),
    Column("attempt", Integer, nullable=False, default=0),
    Column("result", String(20), nullable=False, index=True),
    Column("reason", String(100), nullable=True),
    Column("result_output", Text, nullable=False, default=""),
    Column("duration_ms", Integer, nullable=False, default=0),
    Column("replica", String(100), nullable=True),
    _now_col("created_at"),
    Column("finished_at", UTCDateTime(), nullable=True),
    # What the target looked like just before the action (receiver.evidence), or null.
    Column("evidence", JSON(none_as_null=True), nullable=True),
    Index("ix_heal_logs_incident_id_created_at", "incident_id", "created_at"),
    # Quarantine counts the actions on a target within its window.
    Index("ix_heal_logs_target_created_at", "target", "created_at"),
)

signals = Table(
    "signals",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # Alertmanager resends carry the same key: counted, never stored twice.
    Column("idempotency_key", String(300), nullable=False, unique=True),
    Column("source", String(20), nullable=False),
    Column("incident_key", String(300), nullable=False),
    Column("status", String(20), nullable=False),
    Column("fingerprint", String(128), nullable=True),
    Column("message", Text, nullable=False),
    # The alert as received: labels, annotations, generatorURL, group fields, unknown extras.
    Column("payload", JSON, nullable=False),
    Column("occurrences", Integer, nullable=False, default=1),
    _now_col("received_at"),
    _now_col("last_received_at"),
    # An incident's timeline: a scheduler's signals by their incident key. Only theirs: an
    # alert's are found by their idempotency keys (its incident key and status), so the
    # bulk of ingest does not maintain a second 300-character index.
    Index(
        "ix_signals_scheduler_incident_key",
        "incident_key",
        sqlite_where=text("source = 'scheduler'"),
        postgresql_where=text("source = 'scheduler'"),
    ),
)

target_locks = Table(
    "target_locks",
    metadata,
    # One action at a time per target (host + container), across replicas: the row is the
    # lock; it expires, so a replica that died holding it cannot block the target for good.
    Column("target", String(300), primary_key=True),
    Column("incident_id", Integer, nullable=False),
    Column("owner", String(100), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
)

cooldowns = Table(
    "cooldowns",
    metadata,
    # One row per (playbook, target): taking the cooldown is a conditional UPDATE, so it
    # holds across replicas.
    Column("playbook_id", Integer, ForeignKey("playbooks.id"), primary_key=True),
    Column("target", String(300), primary_key=True),
    Column("incident_id", Integer, nullable=True),
    _now_col("last_action_at"),
)

outbox = Table(
    "outbox",
    metadata,
    # One row per notification and channel, written in the same transaction as the state
    # change that causes it; a sender claims due rows with a lease and marks them sent once.
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("channel", String(50), nullable=False),
    Column("event", String(30), nullable=False),
    Column("incident_id", Integer, nullable=True),
    Column("payload", JSON, nullable=False),
    Column("status", String(10), nullable=False),  # pending | sent | failed
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime(), nullable=False),
    Column("lease_owner", String(100), nullable=True),
    Column("lease_until", UTCDateTime(), nullable=True),
    Column("last_error", Text, nullable=True),
    Column("sent_at", UTCDateTime(), nullable=True),
    _now_col("created_at"),
    Index("ix_outbox_status_next_attempt_at", "status", "next_attempt_at"),
    # An incident's timeline lists its notices (the outbox keeps days of them).
    Index("ix_outbox_incident_id", "incident_id"),
)

knowledge = Table(
    "knowledge",
    metadata,
    # What worked for which fault: one row per (error type, message signature, playbook),
    # updated on every heal outcome. Orders playbooks when several match.
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("error_type", String(50), nullable=False),
    Column("signature", String(64), nullable=False),
    Column("playbook_id", Integer, ForeignKey("playbooks.id"), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("successes", Integer, nullable=False, default=0),
    Column("failures", Integer, nullable=False, default=0),
    Column("heal_seconds_total", Float, nullable=False, default=0),
    Column("recent_heal_seconds", JSON, nullable=False),  # the last 50, for the median
    Column("example_message", Text, nullable=False),
    Column("last_seen_at", UTCDateTime(), nullable=False),
    Column("last_success_at", UTCDateTime(), nullable=True),
    UniqueConstraint("error_type", "signature", "playbook_id"),
)

pause = Table(
    "pause",
    metadata,
    # At most one row (id 1): while it is there (and ``until``, if set, is ahead) no action
    # starts on any replica. Incidents are still recorded; they wait.
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("reason", Text, nullable=False),
    Column("paused_by", String(200), nullable=False),
    Column("paused_at", UTCDateTime(), nullable=False),
    Column("until", UTCDateTime(), nullable=True),
)

quarantine = Table(
    "quarantine",
    metadata,
    # A target that took too many actions in a window (a restart loop): no automatic action
    # on it until a person lifts it. Lifted rows stay: the next count starts at the lift.
    Column("target", String(300), primary_key=True),
    Column("since", UTCDateTime(), nullable=False),
    Column("reason", Text, nullable=False),
    Column(
        "incident_id", Integer, nullable=True
    ),  # the incident whose action would have tripped it
    Column("playbook_id", Integer, nullable=True),
    Column("lifted_at", UTCDateTime(), nullable=True),
    Column("lifted_by", String(200), nullable=True),
)

task_runs = Table(
    "task_runs",
    metadata,
    # A scheduler's runs of a task, from its start, success and failure reports (the client
    # names each run; a report without a run is a run of its own). What missed and
    # overrunning runs are found from, and each run's duration.
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("task", String(100), nullable=False),
    Column("run", String(200), nullable=False),
    Column("started_at", UTCDateTime(), nullable=True),  # null: no start ping came
    Column("finished_at", UTCDateTime(), nullable=True),  # null: still running
    Column("outcome", String(20), nullable=False),  # running, success, failed
    Column("overrun_at", UTCDateTime(), nullable=True),  # reported RUN_TOO_LONG then
    UniqueConstraint("task", "run"),
    Index("ix_task_runs_task_started_at", "task", "started_at"),
    Index("ix_task_runs_task_finished_at", "task", "finished_at"),
)

tasks = Table(
    "tasks",
    metadata,
    # Declared tasks (tasks.yaml), by name: since when autoheal expects to hear from each, so
    # a task never heard from is missed from then on, on every replica and after restarts.
    Column("name", String(100), primary_key=True),
    Column("declared_at", UTCDateTime(), nullable=False),
    # The due time last reported missed: the next run is expected after it (once per run).
    Column("missed_due", UTCDateTime(), nullable=True),
)

login_failures = Table(
    "login_failures",
    metadata,
    # A credential that did not match, by client address (the page's login form, or an API
    # request that carried an Authorization header), across replicas. Rows older than the
    # window are deleted as new ones come (never more than the window's worth).
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("address", String(64), nullable=False),
    Column("via", String(10), nullable=False),  # ui or api
    Column("at", UTCDateTime(), nullable=False),
    Index("ix_login_failures_address_at", "address", "at"),
    Index("ix_login_failures_at", "at"),
)

action_budget = Table(
    "action_budget",
    metadata,
    # Actions started per fixed window, across replicas: taking one is a conditional UPDATE
    # (used < budget), so an alert storm cannot restart more than the budget allows.
    Column("window_start", UTCDateTime(), primary_key=True),
    Column("used", Integer, nullable=False, default=0),
)
