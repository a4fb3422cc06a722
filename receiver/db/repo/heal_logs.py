"""The heal_logs table: one row per attempt (or refusal), pending until it finishes.

The writers are synchronous and take many rows at once: the worker records a whole batch of
incidents in one transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from receiver.db.repo.multirow import execute_many, prepare, run_upsert
from receiver.db.schema import heal_logs
from receiver.domain import HealResult, LogReason

# What a finished attempt writes (the action may say better what ran: action_detail).
_FINISHED = ("result", "result_output", "duration_ms", "finished_at", "reason")

# Built once (see repo.incidents on why).
_ADD = heal_logs.insert().returning(heal_logs.c.id, sort_by_parameter_order=True)
# Only a pending log is finished: one already settled (taken as interrupted after its lease
# ran out) keeps what it says, whatever the late outcome.
_FINISH = (
    update(heal_logs)
    .where(heal_logs.c.id == bindparam("_id"), heal_logs.c.result == HealResult.PENDING.value)
    .values(
        {
            **{k: bindparam(k) for k in (*_FINISHED, "evidence")},
            "action_detail": func.coalesce(bindparam("action_detail"), heal_logs.c.action_detail),
        }
    )
)
_FAIL_INTERRUPTED = (
    update(heal_logs)
    .where(
        heal_logs.c.incident_id.in_(bindparam("ids", expanding=True)),
        heal_logs.c.result == HealResult.PENDING.value,
    )
    .values(
        result=HealResult.FAILED.value,
        reason=LogReason.INTERRUPTED.value,
        result_output="attempt interrupted: the worker stopped before it finished",
        finished_at=bindparam("now"),
    )
)


def add(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> list[int]:
    """Insert heal logs; their ids, in the order given."""
    if not rows:
        return []
    params = [{"result_output": "", "duration_ms": 0, **r} for r in rows]
    ids = [int(r[0]) for r in run_upsert(conn, prepare(conn.dialect, _ADD, params))]
    # SQLite numbers one INSERT's rows in the order given (ascending rowids, one writer) but
    # need not return them in that order; PostgreSQL's come back sorted by parameter order.
    return sorted(ids) if conn.dialect.name == "sqlite" else ids


def finish(conn: Connection, finished: Iterable[Mapping[str, Any]]) -> None:
    """Settle pending logs: each mapping holds ``id``, the columns of ``_FINISHED``,
    ``action_detail`` (None keeps what was planned) and optionally ``evidence``."""
    params = [
        {
            "_id": f["id"],
            **{k: f[k] for k in (*_FINISHED, "action_detail")},
            "evidence": f.get("evidence"),
        }
        for f in finished
    ]
    execute_many(conn, _FINISH, params)


def fail_interrupted(conn: Connection, incident_ids: Sequence[int], now: datetime) -> int:
    """Pending attempts left by a replica that died mid-heal become failures."""
    if not incident_ids:
        return 0
    result = conn.execute(_FAIL_INTERRUPTED, {"ids": list(incident_ids), "now": now})
    return int(result.rowcount)


async def incident_heal_logs(conn: AsyncConnection, incident_id: int) -> list[dict[str, Any]]:
    rows = (
        await conn.execute(
            select(heal_logs)
            .where(heal_logs.c.incident_id == incident_id)
            .order_by(heal_logs.c.created_at, heal_logs.c.id)
        )
    ).all()
    return [dict(r._mapping) for r in rows]


async def last_evidence(
    conn: AsyncConnection, incident_ids: Sequence[int]
) -> dict[int, dict[str, Any]]:
    """Each incident's latest evidence (the capture before its last action that took one)."""
    if not incident_ids:
        return {}
    rows = await conn.execute(
        select(heal_logs.c.incident_id, heal_logs.c.evidence)
        .where(
            heal_logs.c.incident_id.in_(list(incident_ids)),
            heal_logs.c.evidence.is_not(None),
        )
        .order_by(heal_logs.c.id)
    )
    return {row.incident_id: row.evidence for row in rows}  # the newest wins
