"""The knowledge table: heal outcomes per (error type, message signature, playbook).

``record`` is synchronous (the ingest batch calls it on its connection; async callers use
``run_sync``), so an outcome is recorded in the transaction that decides it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from receiver.db.repo._sql import dialect_insert
from receiver.db.schema import incidents, knowledge, playbooks
from receiver.knowledge import RECENT, SIMILAR_AT_LEAST, Record, median, shingles, similarity
from receiver.textmatch import message_signature

_CANDIDATES_FOR_SIMILARITY = 2000  # the most recently healed rows compared with a message


def record(conn: Connection, incident_ids: Sequence[int], ok: bool, now: datetime) -> None:
    """One outcome for each incident's (error type, signature, playbook): a heal that held
    (``ok``, with its time to heal) or an attempt that failed or did not hold."""
    if not incident_ids:
        return
    rows = conn.execute(
        select(
            incidents.c.error_type,
            incidents.c.signature,
            incidents.c.error_message,
            incidents.c.playbook_id,
            incidents.c.created_at,
            incidents.c.resolved_at,
        ).where(incidents.c.id.in_(list(incident_ids)), incidents.c.playbook_id.is_not(None))
    ).all()
    insert = dialect_insert(conn.dialect.name)
    for row in rows:
        signature = row.signature or message_signature(row.error_message)
        key = (
            knowledge.c.error_type == row.error_type,
            knowledge.c.signature == signature,
            knowledge.c.playbook_id == row.playbook_id,
        )
        conn.execute(
            insert(knowledge)
            .values(
                error_type=row.error_type,
                signature=signature,
                playbook_id=row.playbook_id,
                attempts=0,
                successes=0,
                failures=0,
                heal_seconds_total=0.0,
                recent_heal_seconds=[],
                example_message=row.error_message[:2000],
                last_seen_at=now,
            )
            .on_conflict_do_nothing()
        )
        current = select(knowledge.c.id, knowledge.c.recent_heal_seconds).where(*key)
        if conn.dialect.name == "postgresql":
            current = current.with_for_update()  # the recent list is read, then written
        found = conn.execute(current).one()
        values: dict[str, Any] = {
            "attempts": knowledge.c.attempts + 1,
            "last_seen_at": now,
            "example_message": row.error_message[:2000],
        }
        if ok and row.resolved_at is not None:
            seconds = max((row.resolved_at - row.created_at).total_seconds(), 0.0)
            values.update(
                successes=knowledge.c.successes + 1,
                heal_seconds_total=knowledge.c.heal_seconds_total + seconds,
                recent_heal_seconds=[*list(found.recent_heal_seconds)[-(RECENT - 1) :], seconds],
                last_success_at=now,
            )
        else:
            values["failures"] = knowledge.c.failures + 1
        conn.execute(update(knowledge).where(knowledge.c.id == found.id).values(**values))
        if ok:
            # The seed's flag: this playbook's success is in the knowledge store.
            conn.execute(
                update(playbooks)
                .where(playbooks.c.id == row.playbook_id, playbooks.c.km_synced.is_(False))
                .values(km_synced=True)
            )


def records_for(conn: Connection, error_type: str, signature: str | None) -> dict[int, Record]:
    """Per playbook id, what is known for this fault (the worker orders candidates by it)."""
    if signature is None:
        return {}
    rows = conn.execute(
        select(knowledge.c.playbook_id, knowledge.c.attempts, knowledge.c.successes).where(
            knowledge.c.error_type == error_type, knowledge.c.signature == signature
        )
    )
    return {r.playbook_id: Record(r.attempts, r.successes) for r in rows}


def _view(row: Any) -> dict[str, Any]:
    m = dict(row._mapping)
    recent = m.pop("recent_heal_seconds") or []
    successes = m["successes"]
    m["success_rate"] = round(successes / m["attempts"], 4) if m["attempts"] else None
    m["mean_heal_seconds"] = (
        round(m.pop("heal_seconds_total") / successes, 3) if successes else None
    )
    middle = median(recent)
    m["median_heal_seconds"] = round(middle, 3) if middle is not None else None
    return m


def _listing() -> Any:
    return select(
        knowledge.c.id,
        knowledge.c.error_type,
        knowledge.c.signature,
        knowledge.c.playbook_id,
        playbooks.c.name.label("playbook"),
        knowledge.c.attempts,
        knowledge.c.successes,
        knowledge.c.failures,
        knowledge.c.heal_seconds_total,
        knowledge.c.recent_heal_seconds,
        knowledge.c.example_message,
        knowledge.c.last_seen_at,
        knowledge.c.last_success_at,
    ).select_from(knowledge.join(playbooks, knowledge.c.playbook_id == playbooks.c.id))


async def list_knowledge(
    conn: AsyncConnection, *, error_type: str | None, playbook: str | None, limit: int
) -> list[dict[str, Any]]:
    stmt = _listing()
    if error_type:
        stmt = stmt.where(knowledge.c.error_type == error_type)
    if playbook:
        stmt = stmt.where(playbooks.c.name == playbook)
    rows = await conn.execute(stmt.order_by(knowledge.c.last_seen_at.desc()).limit(limit))
    return [_view(r) for r in rows]


def similar(conn: Connection, message: str, limit: int = 3) -> list[dict[str, Any]]:
    """Past faults that were healed, most similar to ``message`` first (at least
    SIMILAR_AT_LEAST): which playbook healed them and how often."""
    mine = shingles(message)
    rows = conn.execute(
        _listing()
        .where(knowledge.c.successes > 0)
        .order_by(knowledge.c.last_success_at.desc())
        .limit(_CANDIDATES_FOR_SIMILARITY)
    ).all()
    scored = []
    for row in rows:
        score = similarity(mine, shingles(row.example_message))
        if score >= SIMILAR_AT_LEAST:
            scored.append((score, row))
    scored.sort(key=lambda item: -item[0])
    return [
        {
            "similarity": round(score, 3),
            **{k: v for k, v in _view(row).items() if k != "signature"},
        }
        for score, row in scored[:limit]
    ]
