"""Store behaviour: migrations, playbook sync, outages, two replicas on one database."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from receiver.app import create_app
from receiver.db import repo
from receiver.db.engine import open_database
from receiver.db.migrate import HEAD_REVISION, alembic_head, current_revision, upgrade
from receiver.db.repo.multirow import chunk_sizes
from receiver.db.schema import incidents
from receiver.domain import ErrorType, Severity, Signal, Source
from receiver.playbooks import load_playbooks, parse_playbooks
from tests.conftest import ROOT, Service, _pg, load_fixture, pg_url, require
from tests.scripted_action import WITH_SCRIPTED


async def test_app_migrates_an_empty_database_in_a_child_process(
    fresh_schema: None, store_url: str, make_settings: Any, aiohttp_client: Any
) -> None:
    svc = Service(await aiohttp_client(create_app(make_settings())))
    ready = await (await svc.client.get("/readyz")).json()
    assert ready == {"status": "ready", "revision": HEAD_REVISION}
    assert len((await svc.get_json("/api/v1/playbooks"))["items"]) == 9  # all bundled


async def test_migrations_run_twice(fresh_schema: None, store_url: str) -> None:
    db = open_database(store_url)
    try:
        await upgrade(db)
        await upgrade(db)
        assert await current_revision(db) == HEAD_REVISION == alembic_head()
    finally:
        await db.dispose()


async def test_playbook_sync_is_idempotent_and_keeps_counts(store_url: str) -> None:
    db = open_database(store_url)
    now = datetime.now(UTC)
    try:
        await upgrade(db)
        seed = load_playbooks(ROOT / "playbooks")
        async with db.transaction() as conn:
            first = await repo.sync_playbooks(conn, seed, now)
        async with db.transaction() as conn:
            await conn.run_sync(repo.playbooks.count, {(first["App OOM restart"], True): 1})
            second = await repo.sync_playbooks(conn, seed, now)
        assert first == second
        changed = parse_playbooks(
            "playbooks:\n  - name: App OOM restart\n    error_type: OOM\n    max_retries: 5\n"
            "    action: {type: alert_only, params: {message: m}}\n",
            "x.yaml",
        )
        async with db.transaction() as conn:
            third = await repo.sync_playbooks(conn, changed, now)
        assert third["App OOM restart"] == first["App OOM restart"]
        async with db.reading() as conn:
            rows = {r["name"]: r for r in await repo.list_playbooks(conn)}
        assert rows["App OOM restart"]["max_retries"] == 5
        assert rows["App OOM restart"]["success_count"] == 1
        assert rows["App OOM restart"]["is_active"] is True
        assert rows["Scheduler OOM restart"]["is_active"] is False
    finally:
        await db.dispose()


def _signals(count: int, task: str, prefix: str = "fp") -> list[Signal]:
    return [
        Signal(
            source=Source.ALERTMANAGER,
            idempotency_key=f"am:{prefix}{i}:t:firing",
            incident_key=f"am:{prefix}{i}:t",
            firing=True,
            task_name=task,
            error_type=ErrorType.OOM,
            severity=Severity.P2,
            message=f"alert {i}",
            labels={"n": str(i)},
        )
        for i in range(count)
    ]


async def test_a_batch_larger_than_one_statement_stores_every_row(
    fresh_schema: None, store_url: str
) -> None:
    """SQLite writes a batch as multi-row statements of bounded size: 3,000 incidents take
    several, and every one comes back with its id, opened once, counted again on a resend."""
    db = open_database(store_url)
    try:
        await upgrade(db)
        batch = _signals(3000, "Big")
        plan = repo.plan_ingest(db.sync_dialect, batch, datetime.now(UTC))
        first = await db.run_in_transaction(repo.ingest, plan)
        plan = repo.plan_ingest(db.sync_dialect, batch, datetime.now(UTC))
        again = await db.run_in_transaction(repo.ingest, plan)
        assert len(first.opened) == 3000 and not again.opened
        assert first.incident_ids == again.incident_ids
        assert len(set(first.incident_ids.values())) == 3000
        async with db.reading() as conn:
            occurrences = (
                (await conn.execute(select(incidents.c.occurrences).distinct())).scalars().all()
            )
        assert occurrences == [2]
    finally:
        await db.dispose()


async def test_a_short_batch_waits_for_another_process_off_the_loop(tmp_path: Path) -> None:
    """A short SQLite batch runs its statements on the event loop. When another process holds
    the write lock, the batch must wait for it on the writer thread: the loop keeps serving
    (health checks, other requests) and the batch commits once the lock is free."""
    url = f"sqlite+aiosqlite:///{tmp_path}/autoheal.db"
    db = open_database(url)
    other = sqlite3.connect(tmp_path / "autoheal.db", isolation_level=None)
    try:
        await upgrade(db)
        # Open the writer's connection first, as a running service has.
        plan = repo.plan_ingest(db.sync_dialect, _signals(1, "Locked", "warm"), datetime.now(UTC))
        await db.run_in_transaction(repo.ingest, plan, short=True)

        other.execute("BEGIN IMMEDIATE")
        plan = repo.plan_ingest(db.sync_dialect, _signals(5, "Locked"), datetime.now(UTC))
        write = asyncio.ensure_future(db.run_in_transaction(repo.ingest, plan, short=True))
        loop = asyncio.get_running_loop()
        longest_gap, last = 0.0, loop.time()
        for _ in range(20):  # 1 s of ticks: the loop must keep running them
            await asyncio.sleep(0.05)
            now = loop.time()
            longest_gap, last = max(longest_gap, now - last), now
        assert not write.done()
        assert longest_gap < 0.5
        other.execute("COMMIT")
        outcome = await asyncio.wait_for(write, 15)
        assert len(outcome.opened) == 5
        async with db.reading() as conn:
            stored = (
                await conn.execute(select(incidents.c.id).where(incidents.c.task_name == "Locked"))
            ).all()
        assert len(stored) == 6
    finally:
        other.close()
        await db.dispose()


_REFUSE_POISON = {
    "sqlite": [
        "CREATE TRIGGER refuse_poison BEFORE INSERT ON incidents WHEN NEW.task_name = 'poison' "
        "BEGIN SELECT RAISE(ABORT, 'poison row'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF NEW.task_name = 'poison' THEN RAISE EXCEPTION 'poison row'; END IF; RETURN NEW; "
        "END $$",
        "CREATE TRIGGER refuse_poison BEFORE INSERT ON incidents FOR EACH ROW "
        "EXECUTE FUNCTION refuse_poison()",
    ],
}


async def test_a_row_the_store_refuses_fails_only_its_own_request(
    make_service: Any, make_alert: Any
) -> None:
    """Requests share a transaction; one the store refuses gets 503 (Alertmanager retries it),
    the others in its batch are stored and answered 200."""
    svc = await make_service()
    async with svc.db.transaction() as conn:
        for statement in _REFUSE_POISON[svc.db.dialect]:
            await conn.exec_driver_sql(statement)
    bodies = [
        make_alert(alerts=[{"fingerprint": f"ok{i}", "labels": {"alertname": "Fine"}}])
        for i in range(6)
    ]
    bodies.insert(3, make_alert(alerts=[{"fingerprint": "bad", "labels": {"alertname": "poison"}}]))
    answers = await asyncio.gather(*(svc.post("/api/v1/alerts", body) for body in bodies))
    assert [a.status for a in answers] == [200, 200, 200, 503, 200, 200, 200]
    assert (await answers[3].json())["error"] == "store_unavailable"
    assert sorted(i["task_name"] for i in await svc.incidents()) == ["Fine"] * 6


async def test_same_alert_at_two_replicas_heals_once(
    make_settings: Any, aiohttp_client: Any, make_alert: Any, playbooks_dir: Any
) -> None:
    from tests import scripted_action

    scripted_action.RUNS.clear()
    tmp = playbooks_dir(
        "playbooks:\n  - name: p\n    error_type: OOM\n    verify_seconds: 60\n"
        "    action: {type: scripted, params: {sleep: 0.2}}\n"
    )
    replicas = [
        Service(
            await aiohttp_client(
                create_app(make_settings(playbooks=tmp, replica_id=f"r{i}"), actions=WITH_SCRIPTED)
            )
        )
        for i in range(2)
    ]
    payload = make_alert(
        alerts=[{"fingerprint": "same", "labels": {"alertname": "ContainerOOMKilled"}}]
    )
    results = await asyncio.gather(*(r.post("/api/v1/alerts", payload) for r in replicas))
    assert [r.status for r in results] == [200, 200]
    await asyncio.gather(*(r.settle() for r in replicas))
    (item,) = await replicas[0].incidents()
    incident = await replicas[1].incident(item["id"])
    assert incident["occurrences"] == 2
    assert len(incident["heal_logs"]) == 1
    assert len(scripted_action.RUNS) == 1


async def test_store_outage_is_503_then_recovers(
    pg_database: str | None, make_settings: Any, aiohttp_client: Any
) -> None:
    """A real PostgreSQL outage: connections refused, then back."""
    if pg_database is None:
        require("PostgreSQL at 127.0.0.1:5432")
    name = pg_database
    await _pg(
        ["DROP SCHEMA public CASCADE", "CREATE SCHEMA public"],
        f"postgresql://postgres@127.0.0.1:5432/{name}",
    )
    svc = Service(await aiohttp_client(create_app(make_settings(database_url=pg_url(name)))))
    payload = load_fixture("firing.json")
    assert (await svc.post("/api/v1/alerts", payload)).status == 200
    await _pg(
        [
            f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false',
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'",
        ]
    )
    try:
        resp = await svc.post("/api/v1/alerts", load_fixture("prom_firing.json"))
        assert resp.status == 503
        assert (await resp.json())["error"] == "store_unavailable"
        assert (await svc.client.get("/readyz")).status == 503
        resp = await svc.client.get(
            "/api/v1/incidents", headers={"Authorization": "Bearer test-token-123"}
        )
        assert resp.status == 503
    finally:
        await _pg([f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'])
    assert (await svc.post("/api/v1/alerts", load_fixture("prom_firing.json"))).status == 200
    assert len(await svc.incidents()) == 2


def test_batches_split_into_few_statement_shapes() -> None:
    """Every batch size maps onto power-of-two chunks of at most 64 rows: at most seven
    statement shapes per upsert stay compiled in the driver's cache, whatever the load."""
    shapes: set[int] = set()
    for count in range(1, 1100):
        sizes = chunk_sizes(count)
        assert sum(sizes) == count
        assert sizes == sorted(sizes, reverse=True)
        assert len([s for s in sizes if s < 64]) == bin(count % 64).count("1")
        shapes.update(sizes)
    assert shapes == {1, 2, 4, 8, 16, 32, 64}


def test_driver_statements_write_what_sqlalchemy_would(tmp_path: Path) -> None:
    """The worker's writes that skip SQLAlchemy's execution layer on SQLite send the same SQL
    and values (datetimes, NULLs, literals compiled in) and store the same heal logs."""
    from sqlalchemy import Connection, create_engine

    from receiver.db.repo.guards import _UNLOCK
    from receiver.db.repo.heal_logs import _ADD, _FINISH
    from receiver.db.repo.incidents import _update
    from receiver.db.repo.multirow import execute_many
    from receiver.db.schema import metadata

    now = datetime(2026, 12, 3, 16, 0, 0, 123456, tzinfo=UTC)
    updates = [
        {"_id": 7, "status": "verifying", "next_attempt_at": now, "_owner": "r1"},
        {"_id": 8, "status": "open", "next_attempt_at": None, "_owner": "r1"},
    ]
    finished = [
        {
            "_id": 3,
            "result": "success",
            "result_output": "HTTP 200\n{}",
            "duration_ms": 4,
            "finished_at": now,
            "reason": None,
            "action_detail": None,
            "evidence": {"container": {"status": "exited", "exit_code": 137}, "logs": None},
        },
        {
            "_id": 4,
            "result": "failed",
            "result_output": "it's 'quoted'",
            "duration_ms": 0,
            "finished_at": now,
            "reason": "not_retryable",
            "action_detail": "POST http://x/",
            "evidence": None,
        },
    ]
    cases = [
        (_update(("next_attempt_at", "status"), "healing", True), updates),
        (_FINISH, finished),
        (_UNLOCK, [{"_target": "http:c1", "_incident": 7}, {"_target": "http:c2", "_incident": 8}]),
    ]
    logs = [
        {
            "incident_id": 7,
            "playbook_id": 1,
            "action_type": "http",
            "action_detail": "POST u",
            "target": t,
            "result": "pending",
            "reason": None,
            "result_output": "",
            "duration_ms": 0,
            "attempt": 1,
            "created_at": now,
            "finished_at": None,
            "replica": "r1",
        }
        for t in ("http:c1", None, "http:c3")
    ] * 30  # more than one multi-row statement

    def run(path: Path, write: Any) -> tuple[list[str], list[int], list[Any]]:
        engine = create_engine(f"sqlite:///{path}")
        metadata.create_all(engine)
        sent: list[str] = []
        with engine.begin() as conn:
            raw = conn.connection.driver_connection
            raw.set_trace_callback(sent.append)
            ids = write(conn)
            raw.set_trace_callback(None)
        with engine.connect() as conn:
            stored = conn.exec_driver_sql("SELECT * FROM heal_logs ORDER BY id").all()
        engine.dispose()
        return [s for s in sent if not s.startswith("INSERT")], ids, stored

    def by_sqlalchemy(conn: Connection) -> list[int]:
        for stmt, rows in cases:
            conn.execute(stmt, rows)
        return [r[0] for r in conn.execute(_ADD, logs)]

    def by_driver(conn: Connection) -> list[int]:
        for stmt, rows in cases:
            execute_many(conn, stmt, rows)
        return repo.heal_logs.add(conn, logs)

    expected = run(tmp_path / "a.db", by_sqlalchemy)
    got = run(tmp_path / "b.db", by_driver)
    assert len(expected[0]) == 1 + 6 and got[0] == expected[0]  # BEGIN, then a row each
    assert got[1] == expected[1] == list(range(1, len(logs) + 1))
    assert got[2] == expected[2] and len(got[2]) == len(logs)


async def test_migrations_build_the_schema_the_code_declares(store_url: str) -> None:
    """Alembic's autogenerate finds nothing to add: every table, column and index in
    receiver/db/schema.py was given a migration."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from receiver.db.schema import metadata

    db = open_database(store_url)
    try:
        async with db.engine.connect() as conn:
            diff = await conn.run_sync(
                lambda c: compare_metadata(MigrationContext.configure(c), metadata)
            )
    finally:
        await db.dispose()
    assert diff == []


async def test_the_claim_walks_the_due_index_without_sorting(store_url: str) -> None:
    """The worker's claim must stop after its batch however many incidents are due: its
    own statement can read ix_incidents_due (partial: active incidents only) in the order
    it asks for, with no sort step."""
    from sqlalchemy import event, text

    db = open_database(store_url)
    now = datetime.now(UTC)

    def explain(conn: Any) -> tuple[str, str]:
        captured: list[tuple[str, Any]] = []

        def capture(c: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
            captured.append((statement, params))

        event.listen(conn, "before_cursor_execute", capture)
        try:
            repo.incidents.claim(conn, now, 4)
        finally:
            event.remove(conn, "before_cursor_execute", capture)
        ((sql, params),) = captured
        if db.dialect == "postgresql":
            # An empty table is read whole and sorted: ask whether the index can serve
            # the query in its order at all, with the other ways priced out.
            for way in ("seqscan", "bitmapscan", "sort", "incremental_sort"):
                conn.exec_driver_sql(f"SET LOCAL enable_{way} = off")
            plan = conn.exec_driver_sql("EXPLAIN " + sql, params).scalars().all()
            index = "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_incidents_due'"
        else:
            plan = [r[-1] for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params)]
            index = "SELECT sql FROM sqlite_master WHERE name = 'ix_incidents_due'"
        return "\n".join(plan), conn.execute(text(index)).scalar_one()

    try:
        plan, index = await db.run_in_transaction(explain, short=True)
    finally:
        await db.dispose()
    assert "ix_incidents_due" in plan, plan
    assert "TEMP B-TREE" not in plan and "Sort" not in plan, plan
    assert "next_attempt_at IS NOT NULL" in index, index


async def test_a_settled_heal_log_is_never_rewritten(store_url: str) -> None:
    """Issue 16, item 8: an attempt taken as interrupted (its lease ran out) was later
    overwritten to `success` by the late outcome. Only a pending log is finished."""
    from receiver.db.schema import heal_logs

    db = open_database(store_url)
    try:
        now = datetime.now(UTC)
        plan = repo.plan_ingest(db.sync_dialect, _signals(1, "Late"), now)
        (incident_id,) = (await db.run_in_transaction(repo.ingest, plan)).incident_ids.values()
        row = {
            "incident_id": incident_id,
            "playbook_id": None,
            "action_type": "http",
            "action_detail": "POST x",
            "target": "t",
            "result": "pending",
            "reason": None,
            "attempt": 1,
            "created_at": now,
            "finished_at": None,
            "replica": "r0",
        }
        (log_id,) = await db.run_in_transaction(repo.heal_logs.add, [row])
        await db.run_in_transaction(repo.heal_logs.fail_interrupted, [incident_id], now)
        late = {
            "id": log_id,
            "result": "success",
            "result_output": "done",
            "duration_ms": 7500,
            "finished_at": now,
            "reason": None,
            "action_detail": None,
        }
        await db.run_in_transaction(repo.heal_logs.finish, [late])
        async with db.reading() as conn:
            stored = (await conn.execute(select(heal_logs))).one()._mapping
        assert (stored["result"], stored["reason"]) == ("failed", "interrupted")
    finally:
        await db.dispose()


def test_a_lease_too_short_to_renew_is_refused() -> None:
    """Item 8: leases are renewed every third of their length while an action runs."""
    from receiver.config import load_settings
    from receiver.errors import ConfigError

    with pytest.raises(ConfigError, match="lease_seconds"):
        load_settings(None, lease_seconds=0.1)


async def test_target_locks_taken_where_free_expired_or_own(store_url: str) -> None:
    """The worker takes its batch's locks without reading them first: the INSERT takes the
    free targets, and of the rows already there the expired ones and the incident's own
    are taken over. Another incident's live lock is not, and read_locks (the facts the
    losers are decided again on) shows who holds it."""
    from datetime import timedelta

    from receiver.db.schema import target_locks

    db = open_database(store_url)
    try:
        now = datetime.now(UTC)
        hold = timedelta(seconds=60)
        plan = repo.plan_ingest(db.sync_dialect, _signals(6, "Lock"), now)
        ids = sorted((await db.run_in_transaction(repo.ingest, plan)).incident_ids.values())
        a, b, c, d, e, f = ids
        setup = [("held", a), ("stale", b), ("mine", c)]
        await db.run_in_transaction(repo.guards.lock_targets, setup, "r0", now, hold)
        async with db.transaction() as conn:
            await conn.execute(
                target_locks.update()
                .where(target_locks.c.target == "stale")
                .values(expires_at=now - timedelta(seconds=1))
            )
        wanted = [("held", d), ("stale", e), ("mine", c), ("free", f)]
        got = await db.run_in_transaction(repo.guards.lock_targets, wanted, "r1", now, hold)
        assert got == {e, c, f}
        facts = await db.run_in_transaction(repo.guards.read_locks, ["held", "free", "none"])
        assert {t: holder for t, (holder, _) in facts.items()} == {"held": a, "free": f}
        async with db.reading() as conn:
            query = select(target_locks.c.target, target_locks.c.incident_id)
            rows = {t: i for t, i in (await conn.execute(query)).all()}
        assert rows == {"held": a, "stale": e, "mine": c, "free": f}
    finally:
        await db.dispose()
