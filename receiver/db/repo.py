"""Repository functions: the connection comes first, the caller owns the transaction."""

from __future__ import annotations

import functools
import operator
import re
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, case, delete, func, or_, select, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from receiver.db.schema import (
    cooldowns,
    heal_logs,
    incidents,
    playbooks,
    signals,
    target_locks,
)
from receiver.domain import (
    ACTIVE_STATUSES,
    EscalationReason,
    HealResult,
    IncidentStatus,
    Signal,
    Source,
)
from receiver.playbooks import Playbook

_ACTIVE = [s.value for s in ACTIVE_STATUSES]
_RESOLVABLE = [*_ACTIVE, IncidentStatus.ESCALATED.value]


def _dialect(conn: AsyncConnection) -> str:
    return conn.dialect.name


def _dialect_insert(dialect: str) -> Callable[[Any], Any]:
    """The dialect's INSERT, which knows ON CONFLICT (both spell it the same).

    The PostgreSQL module is imported only when used: the embedded default never loads it.
    """
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert
    return sqlite.insert


def _insert(conn: AsyncConnection, table: Any) -> Any:
    return _dialect_insert(_dialect(conn))(table)


@dataclass(frozen=True, slots=True)
class IngestOutcome:
    incident_ids: dict[str, int]  # incident key -> id, for the keys this batch touched
    # (incident id, error type, escalated at once for want of a playbook), for new incidents
    opened: list[tuple[int, str, bool]]
    resolved: int


@dataclass(frozen=True, slots=True)
class _Upsert:
    """One upsert of many rows. ``driver``: on SQLite, the ready SQL and parameters."""

    stmt: Any
    rows: list[dict[str, Any]]
    driver: list[tuple[str, tuple[Any, ...]]] | None


@dataclass(frozen=True, slots=True)
class IngestPlan:
    """Everything a batch writes, prepared before the transaction starts.

    Building rows and driver parameters (JSON encoding included) is pure Python, done on the
    event loop before the writer lock is taken, so the transaction holds the lock only for
    the statements themselves.
    """

    now: datetime
    stored_now: Any  # ``now`` as the driver returns created_at
    unmatched: frozenset[str]
    signals: _Upsert
    incidents: list[_Upsert]
    resolved_keys: list[str]


def plan_ingest(
    dialect: Dialect,
    batch: Sequence[Signal],
    now: datetime,
    unmatched: frozenset[str] = frozenset(),
) -> IngestPlan:
    """Rows for a batch of signals: one per idempotency key and one per incident key.

    ``unmatched``: incident keys no playbook matches. They open already escalated
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
    statements = _statements(dialect.name)
    incident_upserts = []
    for source in Source:
        rows = _incident_rows([s for s in batch if s.firing and s.source is source], now, unmatched)
        if rows:
            incident_upserts.append(_prepare(dialect, statements.incident_upsert[source], rows))
    return IngestPlan(
        now=now,
        stored_now=_stored(dialect, incidents.c.created_at, now),
        unmatched=unmatched,
        signals=_prepare(dialect, statements.signal_upsert, list(sig_rows.values())),
        incidents=incident_upserts,
        resolved_keys=[s.incident_key for s in batch if not s.firing],
    )


def ingest(conn: Connection, plan: IngestPlan) -> IngestOutcome:
    """Store signals and open, attach or resolve incidents: a few statements per batch.

    A plain (sync) function: ``Database.run_in_transaction`` decides where it runs (on
    SQLite the event loop or the writer thread, on PostgreSQL ``run_sync``).
    """
    _run_upsert(conn, plan.signals)
    ids: dict[str, int] = {}
    opened: list[tuple[int, str, bool]] = []
    for upsert in plan.incidents:
        # RETURNING gives back inserted and updated rows alike; a row this batch inserted
        # carries the batch's own timestamp.
        for inc_id, key, created, error_type in _run_upsert(conn, upsert):
            ids[key] = inc_id
            if created == plan.stored_now:
                opened.append((inc_id, error_type, key in plan.unmatched))

    resolved = 0
    if plan.resolved_keys:
        now = plan.now
        result = conn.execute(
            update(incidents)
            .where(
                incidents.c.dedup_key.in_(plan.resolved_keys),
                incidents.c.status.in_(_RESOLVABLE),
            )
            .values(
                status=IncidentStatus.RESOLVED.value,
                resolved_at=now,
                updated_at=now,
                next_attempt_at=None,
            )
            .returning(incidents.c.id, incidents.c.dedup_key)
        )
        closed = result.all()
        ids.update({key: inc_id for inc_id, key in closed})
        resolved = len(closed)
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
    insert = _dialect_insert(dialect)
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
        if source is Source.SCHEDULER:
            # The job failed again while we waited to see if the repair held: judge now.
            set_["next_attempt_at"] = case(
                (incidents.c.status == IncidentStatus.VERIFYING.value, ins.excluded.last_seen_at),
                else_=incidents.c.next_attempt_at,
            )
        upserts[source] = ins.on_conflict_do_update(
            index_elements=[incidents.c.dedup_key], set_=set_
        ).returning(
            incidents.c.id, incidents.c.dedup_key, incidents.c.created_at, incidents.c.error_type
        )
    return _Statements(signal_upsert, upserts)


_Param = tuple[str, Callable[[Any], Any] | None]
# Rows per SQLite statement: 64 x the widest row (21 columns) stays far below SQLite's
# bound-parameter limit (32,766 in older builds).
_MAX_ROWS = 64


@dataclass(frozen=True, slots=True)
class _MultiRow:
    """A one-row INSERT compiled for the SQLite driver, ready to repeat its VALUES group."""

    head: str  # up to "VALUES "
    group: str  # "(?, ?, ...)"
    tail: str  # ON CONFLICT ... [RETURNING ...]
    row_params: tuple[_Param, ...]  # per placeholder of the group: column key, processor
    tail_params: tuple[Any, ...]  # literals after the group (a CASE's status), bound once

    def sql(self, rows: int) -> str:
        return self.head + ", ".join([self.group] * rows) + self.tail


_VALUES_GROUP = re.compile(r"VALUES (\(\?(?:, \?)*\))")


@functools.lru_cache(maxsize=64)
def _multi_row(stmt: Any, dialect: Dialect, keys: tuple[str, ...]) -> _MultiRow:
    """Split the compiled statement around its VALUES group.

    Row values go through their column's own processor (JSON, datetimes); literals in the
    ON CONFLICT clause are bound once here.
    """
    compiled = stmt.compile(dialect=dialect, column_keys=list(keys))
    sql = str(compiled)
    groups = list(_VALUES_GROUP.finditer(sql))
    names = list(compiled.positiontup)
    width = len(keys)
    # The layout this relies on: one VALUES group holding exactly the row's columns, first.
    if (
        len(groups) != 1
        or groups[0].group(1).count("?") != width
        or set(names[:width]) != set(keys)
    ):
        raise RuntimeError(f"unexpected INSERT layout: {sql}")
    row_params = tuple(
        (name, _processor(stmt.table.c[name].type, dialect)) for name in names[:width]
    )
    tail_params = tuple(
        _bound(compiled.binds[name].type, dialect, compiled.binds[name].effective_value)
        for name in names[width:]
    )
    match = groups[0]
    return _MultiRow(
        sql[: match.start(1)], match.group(1), sql[match.end(1) :], row_params, tail_params
    )


def _processor(type_: Any, dialect: Dialect) -> Callable[[Any], Any] | None:
    """The type's bind processor for this dialect (JSON encoding, datetime formatting)."""
    processor: Callable[[Any], Any] | None = type_.dialect_impl(dialect).bind_processor(dialect)
    return processor


def _bound(type_: Any, dialect: Dialect, value: Any) -> Any:
    """``value`` as the driver receives it (and SQLite hands it back: text, untyped)."""
    process = _processor(type_, dialect)
    return process(value) if process is not None else value


def _stored(dialect: Dialect, column: Any, value: Any) -> Any:
    """``value`` as the driver hands it back for ``column``: bound form on SQLite."""
    return _bound(column.type, dialect, value) if dialect.name == "sqlite" else value


def _prepare(dialect: Dialect, stmt: Any, rows: list[dict[str, Any]]) -> _Upsert:
    """An upsert of many rows; on SQLite also its driver SQL and parameters.

    On SQLite a few multi-row statements per batch (see _chunk_sizes), straight to the
    driver: executemany stepped (and released the GIL) once per row, and
    SQLAlchemy's per-row parameter handling cost more than the insert itself. Rows go through
    the same column bind processors (JSON, datetimes), each value once. PostgreSQL runs the
    statement through SQLAlchemy's batched insertmanyvalues.
    """
    if dialect.name != "sqlite":
        return _Upsert(stmt, rows, None)
    form = _multi_row(stmt, dialect, tuple(rows[0]))
    width = len(form.row_params)
    pick = operator.itemgetter(*(name for name, _ in form.row_params))
    converted = [(i, process) for i, (_, process) in enumerate(form.row_params) if process]
    seen: dict[tuple[int, int], Any] = {}  # (position, id of a datetime) -> stored form
    values: list[Any] = []
    for row in rows:
        row_values = list(pick(row))
        for i, process in converted:
            value = row_values[i]
            if value is None:
                continue
            if type(value) is datetime:  # the batch's `now` repeats in every row
                key = (i, id(value))
                stored = seen.get(key)
                if stored is None:
                    stored = seen[key] = process(value)
                row_values[i] = stored
            else:
                row_values[i] = process(value)
        values.extend(row_values)
    driver = []
    start = 0
    for size in _chunk_sizes(len(rows)):
        params = values[start * width : (start + size) * width]
        params.extend(form.tail_params)
        start += size
        driver.append((form.sql(size), tuple(params)))
    return _Upsert(stmt, rows, driver)


def _chunk_sizes(count: int) -> list[int]:
    """Row counts per statement: powers of two up to _MAX_ROWS (13 -> 8, 4, 1).

    A handful of distinct statements per upsert, so the driver's statement cache reuses their
    compiled programs instead of parsing, and holding, a new one for every batch size.
    """
    sizes = [_MAX_ROWS] * (count // _MAX_ROWS)
    rest = count % _MAX_ROWS
    bit = _MAX_ROWS
    while rest:
        bit >>= 1
        if rest & bit:
            sizes.append(bit)
            rest -= bit
    return sizes


def _run_upsert(conn: Connection, upsert: _Upsert) -> list[Any]:
    """Execute a prepared upsert; the RETURNING rows if the statement has any."""
    if upsert.driver is None:
        result = conn.execute(upsert.stmt, upsert.rows)
        return list(result) if result.returns_rows else []
    # The driver's own connection, inside the transaction SQLAlchemy began: a batch now runs
    # several small statements, and SQLAlchemy's execution layer cost more than each of them.
    raw = conn.connection.driver_connection
    assert raw is not None
    returned: list[Any] = []
    for sql, params in upsert.driver:
        try:
            returned.extend(raw.execute(sql, params).fetchall())
        except sqlite3.Error as exc:
            # As SQLAlchemy would raise it: callers handle store errors as SQLAlchemyError.
            raise DBAPIError.instance(sql, None, exc, sqlite3.Error) from exc
    return returned


def _incident_rows(
    batch: Iterable[Signal], now: datetime, unmatched: frozenset[str]
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
            "retry_count": 0,
            "occurrences": 1,
            "fingerprint": s.fingerprint,
            "signature": s.signature,
            "labels": dict(s.labels),
            "annotations": dict(s.annotations),
            "next_attempt_at": None if no_playbook else now,
            "starts_at": s.starts_at or s.occurred_at,
            "last_seen_at": now,
            "created_at": now,
            "updated_at": now,
        }
    return list(rows.values())


async def resolve_task(conn: AsyncConnection, task: str, now: datetime) -> list[int]:
    """A scheduler's success ping: its task's open and escalated incidents are resolved."""
    result = await conn.execute(
        update(incidents)
        .where(
            incidents.c.source == Source.SCHEDULER.value,
            incidents.c.task_name == task,
            incidents.c.status.in_(_RESOLVABLE),
        )
        .values(
            status=IncidentStatus.RESOLVED.value,
            resolved_at=now,
            updated_at=now,
            dedup_key=None,
            next_attempt_at=None,
        )
        .returning(incidents.c.id)
    )
    return [r[0] for r in result.all()]


async def sync_playbooks(
    conn: AsyncConnection, loaded: Sequence[Playbook], now: datetime
) -> dict[str, int]:
    """Upsert the YAML playbooks by name; counts survive. Rows no longer in YAML go inactive."""
    existing = {
        row.name: row
        for row in (
            await conn.execute(select(playbooks.c.id, playbooks.c.name, playbooks.c.digest))
        ).all()
    }
    ids: dict[str, int] = {}
    for pb in loaded:
        d = pb.definition()
        values = {
            "error_type": d["error_type"],
            "match_pattern": d["match_pattern"],
            "severity_min": d["severity_min"],
            "action_type": d["action_type"],
            "action_params": d["action_params"],
            "cooldown_min": d["cooldown_min"],
            "max_retries": d["max_retries"],
            "is_active": d["is_active"],
            "definition": d,
            "digest": pb.digest,
            "file": pb.file,
        }
        row = existing.get(pb.name)
        if row is None:
            ins = _insert(conn, playbooks)
            await conn.execute(
                ins.values(
                    name=pb.name,
                    success_count=0,
                    fail_count=0,
                    km_synced=False,
                    created_at=now,
                    updated_at=now,
                    **values,
                ).on_conflict_do_nothing(index_elements=[playbooks.c.name])
            )
        elif row.digest != pb.digest:
            await conn.execute(
                update(playbooks).where(playbooks.c.id == row.id).values(updated_at=now, **values)
            )
    gone = set(existing) - {pb.name for pb in loaded}
    if gone:
        await conn.execute(
            update(playbooks)
            .where(playbooks.c.name.in_(gone), playbooks.c.is_active.is_(True))
            .values(is_active=False, updated_at=now)
        )
    for pid, pname in (await conn.execute(select(playbooks.c.id, playbooks.c.name))).all():
        ids[pname] = pid
    return ids


async def claim(
    conn: AsyncConnection, owner: str, now: datetime, lease: timedelta, limit: int
) -> list[int]:
    """Lease up to ``limit`` due incidents. Expired leases are taken over (a dead replica)."""
    due = (
        select(incidents.c.id)
        .where(
            incidents.c.status.in_(_ACTIVE),
            incidents.c.next_attempt_at <= now,
            or_(incidents.c.lease_until.is_(None), incidents.c.lease_until < now),
        )
        .order_by(incidents.c.next_attempt_at)
        .limit(limit)
    )
    if _dialect(conn) == "postgresql":
        due = due.with_for_update(skip_locked=True)
    candidates = [r[0] for r in (await conn.execute(due)).all()]
    if not candidates:
        return []
    result = await conn.execute(
        update(incidents)
        .where(
            incidents.c.id.in_(candidates),
            or_(incidents.c.lease_until.is_(None), incidents.c.lease_until < now),
        )
        .values(lease_owner=owner, lease_until=now + lease)
        .returning(incidents.c.id)
    )
    return [r[0] for r in result.all()]


async def release(conn: AsyncConnection, incident_id: int, owner: str) -> None:
    await conn.execute(
        update(incidents)
        .where(incidents.c.id == incident_id, incidents.c.lease_owner == owner)
        .values(lease_owner=None, lease_until=None)
    )


async def next_due(conn: AsyncConnection) -> datetime | None:
    """When the earliest active incident falls due: how long the worker may sleep."""
    value = await conn.scalar(
        select(func.min(incidents.c.next_attempt_at)).where(incidents.c.status.in_(_ACTIVE))
    )
    return value if isinstance(value, datetime) else None


async def get_incident(conn: AsyncConnection, incident_id: int) -> dict[str, Any] | None:
    row = (await conn.execute(select(incidents).where(incidents.c.id == incident_id))).first()
    return dict(row._mapping) if row else None


async def update_incident(
    conn: AsyncConnection,
    incident_id: int,
    values: Mapping[str, Any],
    *,
    only_if_status: Iterable[str] | None = None,
) -> bool:
    """Apply values; with only_if_status, only while the incident is still in one of them."""
    stmt = update(incidents).where(incidents.c.id == incident_id).values(**values)
    if only_if_status is not None:
        stmt = stmt.where(incidents.c.status.in_(list(only_if_status)))
    result = await conn.execute(stmt)
    return bool(result.rowcount)


async def escalate(
    conn: AsyncConnection, incident: Mapping[str, Any], reason: EscalationReason, now: datetime
) -> bool:
    values = {"status": IncidentStatus.ESCALATED.value, "escalation_reason": reason.value}
    return await _end(conn, incident, values, now)


async def resolve(conn: AsyncConnection, incident: Mapping[str, Any], now: datetime) -> bool:
    values = {"status": IncidentStatus.RESOLVED.value, "resolved_at": now}
    return await _end(conn, incident, values, now)


async def _end(
    conn: AsyncConnection, incident: Mapping[str, Any], values: dict[str, Any], now: datetime
) -> bool:
    """Close an active incident. A scheduler incident gives up its dedup key, so the task's
    next failure opens a new one; an alert's key stays (its resends still attach)."""
    values = {**values, "next_attempt_at": None, "updated_at": now}
    if incident["source"] == Source.SCHEDULER.value:
        values["dedup_key"] = None
    return await update_incident(conn, incident["id"], values, only_if_status=_ACTIVE)


async def add_heal_log(conn: AsyncConnection, **values: Any) -> int:
    values.setdefault("result_output", "")
    values.setdefault("duration_ms", 0)
    result = await conn.execute(heal_logs.insert().values(**values).returning(heal_logs.c.id))
    return int(result.scalar_one())


async def finish_heal_log(conn: AsyncConnection, log_id: int, **values: Any) -> None:
    await conn.execute(update(heal_logs).where(heal_logs.c.id == log_id).values(**values))


async def fail_interrupted(conn: AsyncConnection, incident_id: int, now: datetime) -> int:
    """Pending attempts left by a replica that died mid-heal become failures."""
    result = await conn.execute(
        update(heal_logs)
        .where(
            heal_logs.c.incident_id == incident_id,
            heal_logs.c.result == HealResult.PENDING.value,
        )
        .values(
            result=HealResult.FAILED.value,
            reason="interrupted",
            result_output="attempt interrupted: the worker stopped before it finished",
            finished_at=now,
        )
    )
    return int(result.rowcount)


async def count_playbook(conn: AsyncConnection, playbook_id: int, ok: bool) -> None:
    column = playbooks.c.success_count if ok else playbooks.c.fail_count
    await conn.execute(
        update(playbooks).where(playbooks.c.id == playbook_id).values({column: column + 1})
    )


async def take_cooldown(
    conn: AsyncConnection,
    playbook_id: int,
    target: str,
    incident_id: int,
    cooldown: timedelta,
    now: datetime,
) -> datetime | None:
    """Take the (playbook, target) cooldown; None if taken, else when it frees up.

    The incident that holds it may act again (its retries are bounded by max_retries).
    """
    ins = _insert(conn, cooldowns)
    created = await conn.execute(
        ins.values(
            playbook_id=playbook_id, target=target, incident_id=incident_id, last_action_at=now
        ).on_conflict_do_nothing()
    )
    if created.rowcount:
        return None
    key = and_(cooldowns.c.playbook_id == playbook_id, cooldowns.c.target == target)
    taken = await conn.execute(
        update(cooldowns)
        .where(
            key,
            or_(
                cooldowns.c.last_action_at <= now - cooldown, cooldowns.c.incident_id == incident_id
            ),
        )
        .values(last_action_at=now, incident_id=incident_id)
    )
    if taken.rowcount:
        return None
    last = await conn.scalar(select(cooldowns.c.last_action_at).where(key))
    return (last or now) + cooldown


async def lock_target(
    conn: AsyncConnection,
    target: str,
    incident_id: int,
    owner: str,
    now: datetime,
    hold: timedelta,
) -> bool:
    """Take the per-target lock; False while another incident's unexpired lock holds it."""
    ins = _insert(conn, target_locks)
    created = await conn.execute(
        ins.values(
            target=target, incident_id=incident_id, owner=owner, expires_at=now + hold
        ).on_conflict_do_nothing()
    )
    if created.rowcount:
        return True
    taken = await conn.execute(
        update(target_locks)
        .where(
            target_locks.c.target == target,
            or_(target_locks.c.expires_at <= now, target_locks.c.incident_id == incident_id),
        )
        .values(incident_id=incident_id, owner=owner, expires_at=now + hold)
    )
    return bool(taken.rowcount)


async def unlock_target(conn: AsyncConnection, target: str, incident_id: int) -> None:
    await conn.execute(
        delete(target_locks).where(
            target_locks.c.target == target, target_locks.c.incident_id == incident_id
        )
    )


async def list_incidents(
    conn: AsyncConnection,
    *,
    status: str | None,
    error_type: str | None,
    limit: int,
    offset: int,
) -> tuple[list[dict[str, Any]], int]:
    conds = []
    if status:
        conds.append(incidents.c.status == status)
    if error_type:
        conds.append(incidents.c.error_type == error_type)
    total = await conn.scalar(select(func.count()).select_from(incidents).where(*conds))
    rows = (
        await conn.execute(
            select(incidents)
            .where(*conds)
            .order_by(incidents.c.id.desc())
            .limit(limit)
            .offset(offset)
        )
    ).all()
    return [dict(r._mapping) for r in rows], int(total or 0)


async def incident_heal_logs(conn: AsyncConnection, incident_id: int) -> list[dict[str, Any]]:
    rows = (
        await conn.execute(
            select(heal_logs)
            .where(heal_logs.c.incident_id == incident_id)
            .order_by(heal_logs.c.created_at, heal_logs.c.id)
        )
    ).all()
    return [dict(r._mapping) for r in rows]


async def list_playbooks(conn: AsyncConnection) -> list[dict[str, Any]]:
    rows = (await conn.execute(select(playbooks).order_by(playbooks.c.id))).all()
    return [dict(r._mapping) for r in rows]


async def active_counts(conn: AsyncConnection) -> dict[str, int]:
    rows = (
        await conn.execute(
            select(incidents.c.status, func.count())
            .where(incidents.c.status.in_(_ACTIVE))
            .group_by(incidents.c.status)
        )
    ).all()
    return {status: int(n) for status, n in rows}
