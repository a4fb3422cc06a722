"""The playbooks table: YAML synced in by name, success and failure counts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Connection, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from receiver.db.repo._sql import insert_into
from receiver.db.schema import playbooks


class Definition(Protocol):
    """A loaded playbook as its row stores it (``receiver.playbooks.Playbook``)."""

    @property
    def name(self) -> str: ...
    @property
    def file(self) -> str: ...
    @property
    def digest(self) -> str: ...
    def definition(self) -> dict[str, Any]: ...


async def sync_playbooks(
    conn: AsyncConnection, loaded: Sequence[Definition], now: datetime
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
            ins = insert_into(conn, playbooks)
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


async def list_playbooks(conn: AsyncConnection) -> list[dict[str, Any]]:
    rows = (await conn.execute(select(playbooks).order_by(playbooks.c.id))).all()
    return [dict(r._mapping) for r in rows]


# Built once (see repo.incidents on why).
_COUNT = {
    ok: update(playbooks)
    .where(playbooks.c.id == bindparam("_id"))
    .values({column: column + bindparam("_n")})
    for ok, column in ((True, playbooks.c.success_count), (False, playbooks.c.fail_count))
}


def count(conn: Connection, outcomes: Mapping[tuple[int, bool], int]) -> None:
    """Add to the playbooks' success and failure counts: ``(playbook id, ok) -> how many``."""
    for ok, stmt in _COUNT.items():
        params = [
            {"_id": pid, "_n": n} for (pid, good), n in sorted(outcomes.items()) if good is ok
        ]
        if params:
            conn.execute(stmt, params)
