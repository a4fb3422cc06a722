"""One line in a real scheduler: APScheduler 3 jobs in this process, Celery tasks in a real
worker process on the Redis this machine runs; each failing job opens its incident and a
clean run resolves it, through receiver.client."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from receiver.client import Client, apscheduler_listener
from receiver.db.schema import task_runs
from tests.conftest import ROOT, TOKEN, playbook_yaml, require, until
from tests.realprograms import stop_process

DB_REFUSED = 'connection to server at "10.0.0.5", port 5432 failed: Connection refused'


async def runs(svc: Any) -> list[dict[str, Any]]:
    async with svc.db.reading() as conn:
        rows = (await conn.execute(select(task_runs).order_by(task_runs.c.id))).all()
    return [dict(r._mapping) for r in rows]


def base(svc: Any) -> str:
    return str(svc.client.make_url("")).rstrip("/")


def run_auto_import_task() -> None:
    raise OSError(
        'could not translate host name "momo-db" to address: Temporary failure in name resolution'
    )


def run_weekly_strategy() -> str:
    return "ok"


def heal(playbooks_dir: Any, error_type: str) -> Any:
    """A playbook that repairs momo-db (the scripted action: the test sees it run)."""
    return playbooks_dir(
        playbook_yaml(
            "scripted",
            "{container: momo-db}",
            name="repair",
            error_type=error_type,
            cooldown_minutes=0,
            verify_seconds=600,
        )
    )


async def test_apscheduler_jobs_report_through_one_listener(
    make_service: Any, playbooks_dir: Any, scripted: list[Any], tmp_path: Path
) -> None:
    from apscheduler.schedulers.background import BackgroundScheduler

    svc = await make_service(playbooks=heal(playbooks_dir, "DNS_FAIL"))
    client = Client(base(svc), token=TOKEN, spool=tmp_path / "spool")
    scheduler = BackgroundScheduler(timezone="UTC")
    apscheduler_listener(scheduler, client=client)  # the one line
    now = datetime.now(UTC)
    scheduler.add_job(run_auto_import_task, "date", run_date=now, id="run_auto_import_task")
    scheduler.add_job(
        run_weekly_strategy,
        "date",
        run_date=now - timedelta(minutes=5),
        misfire_grace_time=1,
        id="run_weekly_strategy",
    )
    scheduler.start()
    try:

        async def reported() -> list[Any]:
            found = await svc.incidents()
            return found if len(found) == 2 else []

        found = {i["task_name"]: i for i in await until(reported, 15, "both jobs reported")}
        assert found["run_auto_import_task"]["error_type"] == "DNS_FAIL"
        assert found["run_weekly_strategy"]["error_type"] == "MISSED_RUN"
        (run,) = [r for r in await runs(svc) if r["task"] == "run_auto_import_task"]
        assert run["outcome"] == "failed" and run["started_at"] is not None
        await svc.settle()  # and its heal
        assert [c for _, c in scripted] == ["momo-db"]

        # The next run is clean: its task's incident resolves.
        scheduler.add_job(
            run_weekly_strategy, "date", run_date=datetime.now(UTC), id="run_auto_import_task"
        )

        async def resolved() -> bool:
            incident = await svc.incident(found["run_auto_import_task"]["id"])
            return bool(incident["status"] == "resolved")

        await until(resolved, 15, "the clean run resolved the incident")
    finally:
        scheduler.shutdown(wait=True)
    outcomes = [r["outcome"] for r in await runs(svc) if r["task"] == "run_auto_import_task"]
    assert outcomes == ["failed", "success"]


@pytest.fixture
def redis_url() -> str:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=2) as conn:
            conn.sendall(b"PING\r\n")
            assert conn.recv(16).startswith(b"+PONG")
    except OSError:
        require("Redis at 127.0.0.1:6379 (apt-get install redis-server)")
    return "redis://127.0.0.1:6379/0"


@pytest.mark.timeout(120)
async def test_a_celery_worker_reports_through_its_signal_handlers(
    make_service: Any, playbooks_dir: Any, scripted: list[Any], redis_url: str, tmp_path: Path
) -> None:
    svc = await make_service(playbooks=heal(playbooks_dir, "DB_UNREACHABLE"))
    queue = f"autoheal-test-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "AUTOHEAL_URL": base(svc),
        "AUTOHEAL_TOKEN": TOKEN,
        "AUTOHEAL_SPOOL": str(tmp_path / "spool"),
        "CELERY_BROKER": redis_url,
        "CELERY_QUEUE": queue,
    }
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "tests.celery_app",
            "worker",
            "--pool=solo",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-Q",
            queue,
            "-l",
            "INFO",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        from celery import Celery

        sender = Celery(broker=redis_url)
        sender.send_task("run_analysis_task", queue=queue)

        async def reported() -> list[Any]:
            return await svc.incidents()

        (incident,) = await until(reported, 60, "the worker's failure reported")
        assert (incident["task_name"], incident["error_type"]) == (
            "run_analysis_task",
            "DB_UNREACHABLE",
        )
        found = await svc.incident(incident["id"])
        assert DB_REFUSED in found["error_message"]
        assert "ConnectionError" in found["error_traceback"]
        await svc.settle()  # and its heal
        assert [c for _, c in scripted] == ["momo-db"]

        sender.send_task("run_analysis_task", queue=queue, kwargs={})
        sender.send_task("run_weekly_strategy", queue=queue)

        async def three_runs() -> list[Any]:
            found = [r for r in await runs(svc) if r["finished_at"] is not None]
            return found if len(found) == 3 else []

        finished = await until(three_runs, 60, "three runs finished")
        assert sorted((r["task"], r["outcome"]) for r in finished) == [
            ("run_analysis_task", "failed"),
            ("run_analysis_task", "failed"),
            ("run_weekly_strategy", "success"),
        ]
        assert all(r["started_at"] is not None for r in finished)
        sender.close()
    finally:
        stop_process(worker)
        log.close()
    assert not (tmp_path / "spool").exists() or (tmp_path / "spool").read_text() == ""


@pytest.mark.timeout(60)
async def test_a_job_that_stops_running_is_noticed_within_its_grace(
    make_service: Any, playbooks_dir: Any, tmp_path: Path
) -> None:
    """Real time: an APScheduler job every second, declared in tasks.yaml (every 1.2 s,
    grace 1.2 s) and watched by a worker replica's task watch; while it runs nothing is
    missed, and once the scheduler stops, a MISSED_RUN incident opens within due + grace."""
    import time

    from apscheduler.schedulers.background import BackgroundScheduler

    from receiver.client import watch

    folder = playbooks_dir("playbooks: []\n")
    (folder / "tasks.yaml").write_text(
        "tasks:\n  - {name: heartbeat_job, every_minutes: 0.02, grace_minutes: 0.02}\n"
    )
    svc = await make_service(playbooks=folder, worker=True, task_watch_seconds=0.2)
    client = Client(base(svc), token=TOKEN, spool=tmp_path / "spool")

    @watch(task="heartbeat_job", client=client)
    def heartbeat_job() -> None:
        pass

    scheduler = BackgroundScheduler(timezone="UTC")
    scheduler.add_job(heartbeat_job, "interval", seconds=1, id="heartbeat_job")
    scheduler.start()
    try:
        await asyncio.sleep(4)
        assert await svc.incidents() == []  # runs on time: nothing missed
    finally:
        scheduler.shutdown(wait=True)
    stopped = time.monotonic()

    async def missed() -> list[Any]:
        return [i for i in await svc.incidents() if i["error_type"] == "MISSED_RUN"]

    (incident,) = await until(missed, 10, "the stopped job noticed")
    noticed = time.monotonic() - stopped
    assert incident["task_name"] == "heartbeat_job"
    print(f"\nthe stopped job was noticed {noticed:.2f} s after its scheduler stopped")
    # Due 1.2 s after the last ping, missed 1.2 s later, seen at the next look (0.2 s).
    assert noticed < 1.2 + 1.2 + 0.2 + 3.0, noticed  # slack for a busy machine
