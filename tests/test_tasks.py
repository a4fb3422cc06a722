"""Declared tasks: missed and overrunning runs found from the store (pure rules at fixed
clocks, then the task watch of real apps on SQLite and PostgreSQL, two replicas at once, and
`autoheal tasks`)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from receiver import appkeys
from receiver.client import Client
from receiver.errors import PlaybookError
from receiver.tasks import Task, TaskModel, TaskState, expect, load_tasks
from tests.conftest import TOKEN, playbook_yaml, until
from tests.test_cli import autoheal

T0 = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


def task(**fields: Any) -> Task:
    return Task.of(TaskModel.model_validate({"name": "job", **fields}))


@pytest.mark.parametrize(
    ("last_ping", "now", "state", "due"),
    [
        (None, T0 + 10 * MIN, TaskState.OK, T0 + 15 * MIN),  # declared at T0, first due +15
        (None, T0 + 17 * MIN, TaskState.LATE, T0 + 15 * MIN),
        (None, T0 + 21 * MIN, TaskState.MISSED, T0 + 15 * MIN),
        (T0 + 14 * MIN, T0 + 21 * MIN, TaskState.OK, T0 + 29 * MIN),  # due after the ping
        (T0 + 14 * MIN, T0 + 35 * MIN, TaskState.MISSED, T0 + 29 * MIN),
        (T0 - 60 * MIN, T0 + 10 * MIN, TaskState.OK, T0 + 15 * MIN),  # declared since wins
    ],
)
def test_an_interval_task_is_due_after_its_last_ping(
    last_ping: datetime | None, now: datetime, state: TaskState, due: datetime
) -> None:
    found = expect(task(every_minutes=15, grace_minutes=5), last_ping, T0, None, now)
    assert (found.state, found.due) == (state, due)


def test_a_cron_task_in_its_zone_across_the_spring_change() -> None:
    berlin = task(schedule="30 2 * * *", timezone="Europe/Berlin", grace_minutes=30)
    last = datetime(2026, 3, 28, 2, 30, tzinfo=UTC)  # 03:30 in Berlin, after Saturday's run
    found = expect(berlin, last, last, None, last + timedelta(hours=12))
    # 02:30 does not exist on Sunday 29 March: the run is due at 03:00 CEST (01:00 UTC).
    assert found.due == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    late = expect(berlin, last, last, None, datetime(2026, 3, 29, 1, 31, tzinfo=UTC))
    assert late.state == TaskState.MISSED


def test_a_run_past_its_max_duration_is_an_overrun() -> None:
    hourly = task(schedule="0 * * * *", max_duration_minutes=30)
    started = T0
    assert expect(hourly, started, T0, started, T0 + 10 * MIN).state == TaskState.RUNNING
    assert expect(hourly, started, T0, started, T0 + 31 * MIN).state == TaskState.OVERRUN
    without = task(schedule="0 * * * *", grace_minutes=5)
    assert expect(without, started, T0, started, T0 + 31 * MIN).state == TaskState.RUNNING
    # Without a max_duration, a run that never ends shows as the next one missed.
    assert expect(without, started, T0, started, T0 + 66 * MIN).state == TaskState.MISSED


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("tasks:\n  - {name: a, schedule: '61 * * * *'}\n", "task 'a': Value error, schedule"),
        ("tasks:\n  - {name: a, schedule: '* * * * *', every_minutes: 5}\n", "one of them"),
        ("tasks:\n  - {name: a}\n", "one of them"),
        ("tasks:\n  - {name: a, every_minutes: 5, timezone: Mars/Olympus}\n", "unknown time zone"),
        ("tasks:\n  - {name: a, every_minutes: 5, severity: urgent}\n", "severity"),
        ("tasks:\n  - {name: a, every_minutes: 5}\n  - {name: a, every_minutes: 9}\n", "twice"),
        ("tasks:\n  - {name: a, every_minutes: 5, colour: red}\n", "colour"),
    ],
)
def test_a_bad_task_file_names_the_task_and_field(tmp_path: Path, text: str, error: str) -> None:
    (tmp_path / "tasks.yaml").write_text(text)
    with pytest.raises(PlaybookError, match="tasks.yaml") as caught:
        load_tasks(tmp_path)
    assert error in str(caught.value)


def test_the_bundled_tasks_file_declares_none() -> None:
    from tests.conftest import ROOT

    assert load_tasks(ROOT / "playbooks") == ()


# -- the task watch, in real apps -----------------------------------------------------------

TASKS = """
tasks:
  - name: run_auto_import_task
    every_minutes: 15
    grace_minutes: 5
    max_duration_minutes: 30
    labels: {container: momo-scheduler}
"""


@pytest.fixture
def folder(playbooks_dir: Any) -> Path:
    made: Path = playbooks_dir(
        playbook_yaml(
            "scripted",
            "{container: '${labels.container}'}",
            name="restart the scheduler",
            error_type="MISSED_RUN",
            cooldown_minutes=0,
            verify_seconds=600,
        )
        + playbook_yaml(
            "alert_only", "{message: a person decides}", name="too long", error_type="RUN_TOO_LONG"
        ).replace("playbooks:\n", "")
    )
    (made / "tasks.yaml").write_text(TASKS)
    return made


def watch_of(svc: Any) -> Any:
    return svc.app[appkeys.TASKWATCH]


def base(svc: Any) -> str:
    return str(svc.client.make_url("")).rstrip("/")


async def test_a_missed_run_is_an_incident_that_heals_and_a_start_ends(
    make_service: Any, folder: Path, scripted: list[Any], tmp_path: Path
) -> None:
    svc = await make_service(playbooks=folder, worker=True, task_watch_seconds=3600)
    now = datetime.now(UTC)
    assert await watch_of(svc).check(now + 10 * MIN) == 0  # not due yet
    assert await svc.incidents() == []
    assert await watch_of(svc).check(now + 21 * MIN) == 1
    assert await watch_of(svc).check(now + 22 * MIN) == 0  # the same missed run: told once
    (incident,) = await svc.incidents()
    assert (incident["task_name"], incident["error_type"]) == ("run_auto_import_task", "MISSED_RUN")
    assert incident["labels"]["container"] == "momo-scheduler"
    assert "has not started" in incident["error_message"]
    await svc.settle()
    assert [c for _, c in scripted] == ["momo-scheduler"]  # the playbook restarted it
    missed = {"task": "run_auto_import_task", "state": "missed"}
    assert svc.sample("autoheal_task_state", missed) == 1

    client = Client(base(svc), token=TOKEN, spool=tmp_path / "spool")
    assert await client.astart("run_auto_import_task", run="r1")  # it runs again
    found = await svc.incident(incident["id"])
    assert found["status"] == "resolved"
    assert svc.sample("autoheal_incidents_resolved_total", {"how": "task_started"}) == 1
    await asyncio.sleep(0.05)
    assert await client.asuccess("run_auto_import_task", run="r1")
    count = "autoheal_task_run_seconds_count"
    assert svc.sample(count, {"task": "run_auto_import_task"}) == 1
    assert await watch_of(svc).check(datetime.now(UTC) + 10 * MIN) == 0


async def test_the_next_run_is_expected_after_the_one_reported_missed(
    make_service: Any, folder: Path, scripted: list[Any]
) -> None:
    """After a missed run is reported (and repaired), the one after it is awaited: missed
    too, it is reported again (the incident's fault came back), not every look."""
    svc = await make_service(playbooks=folder, worker=True, task_watch_seconds=3600)
    now = datetime.now(UTC)
    assert await watch_of(svc).check(now + 21 * MIN) == 1
    await svc.settle()
    assert await watch_of(svc).check(now + 34 * MIN) == 0  # next due +30, grace to +35
    assert await watch_of(svc).check(now + 36 * MIN) == 1
    (incident,) = await svc.incidents()
    assert incident["occurrences"] == 2


async def test_a_run_past_max_duration_is_run_too_long(
    make_service: Any, folder: Path, tmp_path: Path
) -> None:
    svc = await make_service(playbooks=folder, worker=True, task_watch_seconds=3600)
    client = Client(base(svc), token=TOKEN, spool=tmp_path / "spool")
    assert await client.astart("run_auto_import_task", run="long-one")
    now = datetime.now(UTC)
    assert await watch_of(svc).check(now + 29 * MIN) == 0
    assert await watch_of(svc).check(now + 31 * MIN) >= 1
    (incident,) = [i for i in await svc.incidents() if i["error_type"] == "RUN_TOO_LONG"]
    assert "long-one" in incident["error_message"]

    # The replica's own worker runs too (worker=True, for the task watch): wait for it
    # rather than race it with settle().
    async def escalated() -> bool:
        return bool((await svc.incident(incident["id"]))["status"] == "escalated")

    await until(escalated, 10, "the alert_only playbook escalated it")
    assert await client.asuccess("run_auto_import_task", run="long-one")
    assert (await svc.incident(incident["id"]))["status"] == "resolved"


async def test_two_replicas_and_a_restart_store_a_missed_run_once(
    make_service: Any, folder: Path, store_url: str
) -> None:
    one = await make_service(playbooks=folder, worker=True, task_watch_seconds=3600)
    await asyncio.sleep(0.05)
    two = await make_service(playbooks=folder, worker=True, task_watch_seconds=3600)
    later = datetime.now(UTC) + 21 * MIN
    # Declared by the first to load it: the second replica expects the same run.
    await asyncio.gather(watch_of(one).check(later), watch_of(two).check(later))
    (incident,) = await one.incidents()
    assert incident["error_type"] == "MISSED_RUN"

    shown = autoheal(
        "tasks",
        str(folder),
        env={"AUTOHEAL_DATABASE_URL": store_url},
    )
    assert shown.returncode == 0, shown.stderr
    (line,) = [ln for ln in shown.stdout.splitlines() if ln.startswith("run_auto_import_task")]
    assert "every 15 min" in line and "\tok\t" in line  # not missed yet by the clock now


def test_sighup_reloads_playbooks_and_tasks(tmp_path: Path) -> None:
    """A running `autoheal serve` re-reads its files on SIGHUP, as POST /-/reload does; a
    broken file leaves the running set in place."""
    import shutil
    import signal
    import time
    import urllib.request

    from tests.conftest import ROOT
    from tests.serving import start_served

    folder = tmp_path / "playbooks"
    shutil.copytree(ROOT / "playbooks", folder)
    served = start_served(tmp_path, {"AUTOHEAL_PLAYBOOKS": str(folder)})

    def playbooks() -> int:
        request = urllib.request.Request(
            f"{served.url}/api/v1/playbooks", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        with urllib.request.urlopen(request, timeout=5) as answer:
            return len(json.load(answer)["items"])

    def hup_until(count: int, what: str) -> None:
        served.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while playbooks() != count:
            assert time.monotonic() < deadline, what
            time.sleep(0.1)

    try:
        assert playbooks() == 9
        (folder / "extra.yaml").write_text(
            "playbooks:\n  - name: one more\n    error_type: TIMEOUT\n"
            "    action: {type: alert_only, params: {message: look}}\n"
        )
        (folder / "tasks.yaml").write_text("tasks:\n  - {name: nightly, every_minutes: 60}\n")
        hup_until(10, "the new playbook loaded")
        (folder / "extra.yaml").write_text("playbooks: [{name: broken}]\n")
        served.process.send_signal(signal.SIGHUP)
        time.sleep(1)
        assert playbooks() == 10  # the running set stays
        assert served.process.poll() is None
    finally:
        log = served.stop()
    assert "reloaded: 10 playbooks, 1 declared tasks" in log
    assert "SIGHUP: reload refused" in log and "extra.yaml" in log
