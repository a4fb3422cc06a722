"""The autoheal command, run as a user would: a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import FIXTURES, ROOT


def autoheal(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOHEAL_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "receiver", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=full_env,
        cwd=ROOT,
        check=False,
    )


def test_check_bundled_playbooks() -> None:
    result = autoheal("check", str(ROOT / "playbooks"))
    assert result.returncode == 0, result.stderr
    assert "ok: 9 playbooks" in result.stdout  # the seed's 7 and scheduler.yaml's 2


def test_check_names_file_playbook_and_field(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(
        "playbooks:\n  - name: restart everything\n    error_type: OOM\n"
        "    action: {type: ssh_anything, params: {}}\n"
    )
    result = autoheal("check", str(tmp_path))
    assert result.returncode == 2
    assert "bad.yaml" in result.stderr
    assert "restart everything" in result.stderr
    assert "action.type" in result.stderr


def test_check_validates_maintenance_windows(tmp_path: Path) -> None:
    config = tmp_path / "autoheal.yaml"
    config.write_text(
        "time_intervals:\n"
        "  - name: always\n"
        "    time_intervals: [{times: [{start_time: '00:00', end_time: '24:00'}]}]\n"
        "  - name: weekends\n"
        "    time_intervals: [{weekdays: [saturday, sunday], location: Europe/Berlin}]\n"
    )
    folder = tmp_path / "playbooks"
    folder.mkdir()
    playbook = folder / "p.yaml"
    text = (
        "playbooks:\n  - name: restart web\n    error_type: OOM\n"
        "    action: {type: docker_restart, params: {container: web}}\n"
        "    mute_time_intervals: [always]\n"
    )
    playbook.write_text(text)
    result = autoheal("--config", str(config), "check", str(folder))
    assert result.returncode == 0, result.stderr
    assert "mute time interval 'always': holding actions now, no end within 31 days" in (
        result.stdout
    )
    assert "time intervals: 2" in result.stdout
    # A name the settings do not define: the file, playbook and field are named.
    playbook.write_text(text.replace("[always]", "[nightly]"))
    result = autoheal("--config", str(config), "check", str(folder))
    assert result.returncode == 2
    assert "p.yaml" in result.stderr and "mute_time_intervals" in result.stderr
    assert "'nightly'" in result.stderr
    # Alertmanager's own rule: a weekday range may not wrap around Sunday.
    config.write_text(
        "time_intervals:\n  - name: w\n    time_intervals: [{weekdays: ['saturday:sunday']}]\n"
    )
    result = autoheal("--config", str(config), "check", str(folder))
    assert result.returncode == 2
    assert "'saturday:sunday' ends before it begins" in result.stderr


def test_replay_shows_decision_without_acting() -> None:
    result = autoheal("replay", str(FIXTURES / "firing.json"))
    assert result.returncode == 0, result.stderr
    assert "ContainerDown (firing) -> UNKNOWN" in result.stdout
    assert "no_playbook" in result.stdout


def test_replay_exception_report(tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    report.write_text(
        '{"task": "run_weekly_strategy", "severity": "P1", "labels": {"container": "momo-scheduler"},'
        ' "message": "Worker (pid:7) was sent SIGKILL! Perhaps out of memory?"}'
    )
    result = autoheal("replay", str(report))
    assert "Scheduler OOM restart" in result.stdout
    assert "docker restart -t 10 momo-scheduler" in result.stdout


def test_db_upgrade_twice_and_listing(tmp_path: Path) -> None:
    env = {"AUTOHEAL_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/a.db"}
    for _ in range(2):
        result = autoheal("db", "upgrade", env=env)
        assert result.returncode == 0, result.stderr
        assert "database at revision" in result.stdout
    result = autoheal("incidents", env=env)
    assert result.returncode == 0, result.stderr
    assert "(0 of 0)" in result.stdout


def test_bad_settings_exit_with_message() -> None:
    result = autoheal("serve", env={"AUTOHEAL_LISTEN": "0.0.0.0:9"})
    assert result.returncode == 2
    assert "without credentials" in result.stderr
    result = autoheal("serve", env={"AUTOHEAL_DATABASE_URL": "mysql://x"})
    assert result.returncode == 2


def test_replay_orders_playbooks_by_what_the_store_learned(tmp_path: Path) -> None:
    """replay decides as the worker does: with two matching playbooks, the one whose
    repairs kept failing for this fault gives way once the store says so."""
    import asyncio
    from datetime import UTC, datetime

    from receiver.catalog import load_catalog
    from receiver.db.engine import open_database
    from receiver.db.migrate import ensure_schema
    from receiver.db.schema import knowledge
    from receiver.signals import message_signature

    classifiers = (ROOT / "playbooks" / "classifiers.yaml").read_text()
    (tmp_path / "classifiers.yaml").write_text(classifiers)
    (tmp_path / "p.yaml").write_text(
        "playbooks:\n"
        "  - {name: first, error_type: OOM, priority: 10,"
        " action: {type: docker_restart, params: {container: a}}}\n"
        "  - {name: second, error_type: OOM, priority: 1,"
        " action: {type: docker_restart, params: {container: b}}}\n"
    )
    message = "Worker (pid:7) was sent SIGKILL! Perhaps out of memory?"
    report = tmp_path / "r.json"
    report.write_text(f'{{"task": "t", "severity": "P1", "message": "{message}"}}')
    url = f"sqlite+aiosqlite:///{tmp_path}/a.db"
    env = {"AUTOHEAL_DATABASE_URL": url, "AUTOHEAL_PLAYBOOKS": str(tmp_path)}

    before = autoheal("replay", str(report), env=env)  # no store yet: none is created
    assert "playbook 'first': would run docker restart -t 10 a" in before.stdout, before.stderr
    assert not (tmp_path / "a.db").exists()

    async def learn() -> None:
        db = open_database(url)
        try:
            await ensure_schema(db, url)
            catalog = await load_catalog(db, tmp_path)
            async with db.transaction() as conn:
                await conn.execute(
                    knowledge.insert().values(
                        error_type="OOM",
                        signature=message_signature(message),
                        playbook_id=catalog.ids["first"],
                        attempts=5,
                        successes=0,
                        failures=5,
                        heal_seconds_total=0,
                        recent_heal_seconds=[],
                        example_message=message,
                        last_seen_at=datetime.now(UTC),
                    )
                )
        finally:
            await db.dispose()

    asyncio.run(learn())
    after = autoheal("replay", str(report), env=env)
    assert "playbook 'second': would run docker restart -t 10 b" in after.stdout, after.stderr


def test_pause_and_resume_from_the_command_line(tmp_path: Path) -> None:
    env = {"AUTOHEAL_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/a.db"}
    assert autoheal("db", "upgrade", env=env).returncode == 0
    bad = autoheal("pause", "--reason", "x", "--for", "soon", env=env)
    assert bad.returncode == 2 and "not a duration" in bad.stderr
    paused = autoheal("pause", "--reason", "deploy", "--for", "1h30m", env=env)
    assert paused.returncode == 0, paused.stderr
    assert "paused by" in paused.stdout and ": deploy" in paused.stdout
    assert "until" in paused.stdout
    resumed = autoheal("resume", env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed (paused by" in resumed.stdout and "0 incident(s) due now" in resumed.stdout
    assert autoheal("resume", env=env).stdout.strip() == "not paused"


def test_quarantine_list_and_lift_from_the_command_line(tmp_path: Path) -> None:
    import sqlite3

    env = {"AUTOHEAL_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/a.db"}
    assert autoheal("db", "upgrade", env=env).returncode == 0
    assert autoheal("quarantine", "list", env=env).stdout.strip() == "no target is quarantined"
    with sqlite3.connect(tmp_path / "a.db") as db:  # as the worker's trip writes it
        db.execute(
            "INSERT INTO quarantine (target, since, reason) VALUES "
            "('local/db1', '2026-12-04 10:00:00.000000', '6 actions on it in the last 60 min')"
        )
    listed = autoheal("quarantine", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "local/db1" in listed.stdout and "6 actions on it" in listed.stdout
    lifted = autoheal("quarantine", "lift", "local/db1", env=env)
    assert lifted.returncode == 0, lifted.stderr
    assert "lifted the quarantine of local/db1" in lifted.stdout
    assert autoheal("quarantine", "lift", "local/db1", env=env).returncode == 1
    assert autoheal("quarantine", "lift", env=env).returncode == 2
    assert autoheal("quarantine", "list", env=env).stdout.strip() == "no target is quarantined"


async def test_incidents_follow_prints_each_new_incident_and_change(
    make_service: Any, playbooks_dir: Any, make_alert: Any, store_url: str, scripted: Any
) -> None:
    import asyncio

    from tests.conftest import oom_alert, restart_playbook

    svc = await make_service(playbooks=playbooks_dir(restart_playbook(verify_seconds=600)))
    await svc.post("/api/v1/alerts", oom_alert(make_alert, fp="before", container="a1"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOHEAL_")}
    follow = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "receiver",
        "incidents",
        "--follow",
        "--interval",
        "0.2",
        "--for",
        "6s",
        cwd=ROOT,
        env={**env, "AUTOHEAL_DATABASE_URL": store_url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert follow.stdout is not None
    first = await asyncio.wait_for(follow.stdout.readline(), 20)
    assert b"#1 is open OOM ContainerOOMKilled" in first
    await svc.post("/api/v1/alerts", oom_alert(make_alert, fp="after", container="a2"))
    await svc.settle()  # both repaired: verifying
    out, err = await asyncio.wait_for(follow.communicate(), 30)
    lines = out.decode().splitlines()
    assert follow.returncode == 0, err.decode()
    assert any("#2 opened," in ln for ln in lines), lines
    assert any("#1 is now verifying" in ln for ln in lines), lines
