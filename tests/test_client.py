"""The scheduler's side: receiver.client against a real autoheal app (its HTTP server on
127.0.0.1), sync and async, with its spool when autoheal cannot be reached."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from receiver.client import Client, watch
from receiver.db.schema import task_runs
from tests.conftest import ROOT, TOKEN
from tests.realprograms import free_port

DNS = 'could not translate host name "momo-db" to address: Temporary failure in name resolution'


class SchedulerFault(RuntimeError):
    pass


def client(url: str, spool: Path, token: str = TOKEN, **kw: Any) -> Client:
    return Client(url, token=token, spool=spool, timeout=2, **kw)


async def runs(svc: Any) -> list[dict[str, Any]]:
    async with svc.db.reading() as conn:
        rows = (await conn.execute(select(task_runs).order_by(task_runs.c.id))).all()
    return [dict(r._mapping) for r in rows]


def spooled(spool: Path) -> list[dict[str, Any]]:
    if not spool.exists():
        return []
    return [json.loads(line) for line in spool.read_text().splitlines() if line.strip()]


@pytest.fixture
async def svc(make_service: Any) -> Any:
    return await make_service()


def base(svc: Any) -> str:
    return str(svc.client.make_url("")).rstrip("/")


async def test_a_watched_job_that_raises_is_reported_and_re_raised(
    svc: Any, tmp_path: Path
) -> None:
    c = client(base(svc), tmp_path / "spool")

    @watch(task="run_auto_import_task", client=c, labels={"container": "momo-scheduler"})
    def job() -> None:
        raise SchedulerFault(DNS)

    with pytest.raises(SchedulerFault):
        await asyncio.to_thread(job)
    (incident,) = await svc.incidents()
    found = await svc.incident(incident["id"])
    assert found["task_name"] == "run_auto_import_task"
    assert found["error_type"] == "DNS_FAIL"
    assert found["labels"]["container"] == "momo-scheduler"
    assert found["error_message"] == f"tests.test_client.SchedulerFault: {DNS}"
    assert "raise SchedulerFault(DNS)" in found["error_traceback"]
    (run,) = await runs(svc)
    assert (run["task"], run["outcome"]) == ("run_auto_import_task", "failed")
    assert run["started_at"] is not None and run["finished_at"] >= run["started_at"]
    assert spooled(tmp_path / "spool") == []


async def test_success_ends_the_run_and_resolves_the_task(svc: Any, tmp_path: Path) -> None:
    c = client(base(svc), tmp_path / "spool")
    assert await c.areport(SchedulerFault(DNS), "run_auto_import_task")

    @watch(task="run_auto_import_task", client=c)
    async def job() -> str:
        await asyncio.sleep(0.05)
        return "done"

    assert await job() == "done"
    (incident,) = await svc.incidents()
    assert incident["status"] == "resolved"
    (run,) = [r for r in await runs(svc) if r["outcome"] != "failed"]
    assert run["outcome"] == "success"
    assert (run["finished_at"] - run["started_at"]).total_seconds() >= 0.05


async def test_context_managers_sync_and_async(svc: Any, tmp_path: Path) -> None:
    c = client(base(svc), tmp_path / "spool")

    def sync_part() -> None:
        with watch(task="nightly_export", client=c) as w:
            assert w.run is not None

    await asyncio.to_thread(sync_part)
    with pytest.raises(SchedulerFault):
        async with watch(task="nightly_export", client=c):
            raise SchedulerFault("SSL SYSCALL error: EOF detected")
    assert [r["outcome"] for r in await runs(svc)] == ["success", "failed"]


async def test_unreachable_spools_in_order_and_a_resend_counts_once(
    svc: Any, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    away = client(f"http://127.0.0.1:{free_port()}", spool)
    assert not await away.astart("nightly_export", run="r1")
    assert not await away.areport(SchedulerFault(DNS), "nightly_export", run="r1")
    assert not await away.asuccess("other_task")
    assert [e["path"] for e in spooled(spool)] == [
        "/api/v1/start",
        "/api/v1/exceptions",
        "/api/v1/success",
    ]
    first = spooled(spool)

    back = client(base(svc), spool)  # autoheal is back: the next call sends the spool first
    assert await back.astart("later_task", run="r9")
    assert spooled(spool) == []
    assert [(r["task"], r["run"], r["outcome"]) for r in await runs(svc)] == [
        ("nightly_export", "r1", "failed"),
        ("other_task", first[2]["body"]["id"], "success"),
        ("later_task", "r9", "running"),
    ]
    # The spooled times are kept: the run started when the job said, not when it arrived.
    (r1,) = [r for r in await runs(svc) if r["run"] == "r1"]
    assert r1["started_at"].isoformat() == first[0]["body"]["at"]

    # A resend of the same reports (an answer lost after the store) changes nothing.
    spool.write_text("".join(json.dumps(e) + "\n" for e in first))
    assert await asyncio.to_thread(back.flush) == 0
    assert len(await svc.incidents()) == 1
    assert len(await runs(svc)) == 3


async def test_refused_reports_are_dropped_and_a_wrong_token_waits(
    svc: Any, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    wrong = client(base(svc), spool, token="not-the-token")
    assert not await wrong.asuccess("nightly_export")
    assert len(spooled(spool)) == 1  # fixed by configuration, then sent: kept
    right = client(base(svc), spool)
    assert not await right.astart("x" * 101)  # a task name the API refuses (422): dropped
    assert spooled(spool) == []
    assert [r["task"] for r in await runs(svc)] == ["nightly_export"]


def test_the_client_never_raises_into_the_job(tmp_path: Path) -> None:
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise ValueError("no")

    c = Client(None, spool=tmp_path / "spool")
    assert c.success("t") is False  # no URL: said in the log, not raised
    c = Client("http://127.0.0.1:9", spool=tmp_path / "spool", timeout=0.5)
    assert c.report(Unprintable(), "t") is False
    c = Client("not a url", spool=tmp_path / "spool")
    assert c.start("t") is False


def test_importing_the_client_imports_no_server_stack() -> None:
    code = (
        "import sys, receiver.client\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in "
        "('aiohttp', 'sqlalchemy', 'pydantic', 'yaml', 'prometheus_client', 'asyncssh')"
        " or m in ('receiver.config', 'receiver.app')]\n"
        "print(heavy)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert out.stdout.strip() == "[]"


def test_from_env_reads_the_token_file(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("s3cret\n")
    c = Client.from_env(
        {
            "AUTOHEAL_URL": "http://127.0.0.1:9095/",
            "AUTOHEAL_TOKEN_FILE": str(tmp_path / "token"),
            "AUTOHEAL_SPOOL": str(tmp_path / "spool"),
            "AUTOHEAL_CLIENT_TIMEOUT": "0.5",
        }
    )
    assert c.url == "http://127.0.0.1:9095"
    assert c._headers["Authorization"] == "Bearer s3cret"
    assert (c.timeout, c.spool) == (0.5, tmp_path / "spool")
