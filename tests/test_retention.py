"""Retention: history past its age is deleted in batches; what is live or recent stays."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, insert, select, update

from receiver import appkeys
from receiver.db.repo import retention
from receiver.db.schema import heal_logs, incidents, outbox, signals, task_runs
from receiver.retention import Pruner


async def count(svc: Any, table: Any) -> int:
    async with svc.db.reading() as conn:
        return int(await conn.scalar(select(func.count()).select_from(table)) or 0)


@pytest.mark.parametrize("batch", [1000, 2])
async def test_prunes_old_history_and_keeps_the_rest(
    make_service: Any, make_alert: Any, monkeypatch: Any, batch: int
) -> None:
    monkeypatch.setattr(retention, "BATCH", batch)
    svc = await make_service()
    for i in range(10):  # ten alerts, each its own signal and incident (no playbook: escalated)
        await svc.post("/api/v1/alerts", make_alert(alerts=[{"fingerprint": f"f{i}"}]))
    old = datetime.now(UTC) - timedelta(days=200)
    async with svc.db.transaction() as conn:
        # The first six are 200 days old; of those, incident 3 is still active.
        await conn.execute(
            update(signals).where(signals.c.id <= 6).values(received_at=old, last_received_at=old)
        )
        await conn.execute(
            update(incidents).where(incidents.c.id <= 6).values(created_at=old, updated_at=old)
        )
        await conn.execute(update(incidents).where(incidents.c.id == 3).values(status="open"))
        await conn.execute(
            insert(heal_logs).values(
                incident_id=1,
                action_type="x",
                action_detail="x",
                result="success",
                attempt=1,
                created_at=old,
            )
        )
        for status in ("sent", "pending", "failed"):
            await conn.execute(
                insert(outbox).values(
                    channel="telegram",
                    event="escalated",
                    payload={},
                    status=status,
                    attempts=0,
                    next_attempt_at=old,
                    created_at=old,
                )
            )
    pruner = Pruner(svc.app[appkeys.SETTINGS], svc.db)
    deleted = await pruner.prune_once()
    assert deleted == {"signals": 6, "outbox": 2, "incidents": 5, "task_runs": 0}
    assert await count(svc, signals) == 4
    async with svc.db.reading() as conn:
        left = sorted(r[0] for r in (await conn.execute(select(incidents.c.id))).all())
        kept_outbox = [r[0] for r in (await conn.execute(select(outbox.c.status))).all()]
    assert left == [3, 7, 8, 9, 10]  # the active one stays, however old
    assert await count(svc, heal_logs) == 0  # went with its incident
    assert kept_outbox == ["pending"]  # undelivered notifications are never dropped
    nothing = {"signals": 0, "outbox": 0, "incidents": 0, "task_runs": 0}
    assert await pruner.prune_once() == nothing


async def test_zero_keeps_forever(make_service: Any, make_alert: Any) -> None:
    svc = await make_service(
        retention_signals_days=0,
        retention_incidents_days=0,
        retention_outbox_days=0,
        retention_task_runs_days=0,
    )
    await svc.post("/api/v1/alerts", make_alert())
    async with svc.db.transaction() as conn:
        old = datetime.now(UTC) - timedelta(days=5000)
        await conn.execute(update(signals).values(received_at=old, last_received_at=old))
    assert await Pruner(svc.app[appkeys.SETTINGS], svc.db).prune_once() == {}
    assert await count(svc, signals) == 1


async def test_boundary_search_on_an_empty_and_an_all_recent_table(
    make_service: Any, make_alert: Any
) -> None:
    svc = await make_service()
    cutoff = datetime.now(UTC) - timedelta(days=1)
    async with svc.db.reading() as conn:
        assert await retention.last_id_before(conn, signals, signals.c.received_at, cutoff) is None
    await svc.post("/api/v1/alerts", make_alert())
    async with svc.db.reading() as conn:
        assert await retention.last_id_before(conn, signals, signals.c.received_at, cutoff) is None


async def test_old_task_runs_go_and_each_task_keeps_its_latest(make_service: Any) -> None:
    svc = await make_service()
    old, now = datetime.now(UTC) - timedelta(days=200), datetime.now(UTC)
    rows = [
        ("export", "r1", old, old),  # ended long ago: goes
        ("export", "r2", old, None),  # started long ago, never ended: goes
        ("export", "r3", now, now),  # recent: stays
        ("weekly", "w1", old, old),  # old, but weekly's latest run: stays
    ]
    async with svc.db.transaction() as conn:
        for task, run, started, finished in rows:
            await conn.execute(
                insert(task_runs).values(
                    task=task, run=run, started_at=started, finished_at=finished, outcome="x"
                )
            )
    deleted = await Pruner(svc.app[appkeys.SETTINGS], svc.db).prune_once()
    assert deleted["task_runs"] == 2
    async with svc.db.reading() as conn:
        left = sorted(r[0] for r in (await conn.execute(select(task_runs.c.run))).all())
    assert left == ["r3", "w1"]
