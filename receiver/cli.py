"""The ``autoheal`` command. Settings are built here once and passed down."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from receiver.errors import AutohealError

if TYPE_CHECKING:
    from receiver.db.engine import Database


def _settings(args: argparse.Namespace, **overrides: Any) -> Any:
    from receiver.config import load_settings

    return load_settings(getattr(args, "config", None), **overrides)


def cmd_serve(args: argparse.Namespace) -> int:
    from receiver import logs
    from receiver.app import create_app
    from receiver.server import serve

    settings = _settings(args)
    logs.configure(settings.log_level, settings.log_format, settings.secrets())
    app = create_app(settings)
    asyncio.run(serve(app, settings))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from receiver.catalog import load_files

    settings = _settings(args)
    directory = Path(args.directory) if args.directory else settings.playbooks
    playbooks, classifier = load_files(directory, settings.param_scope())
    print(
        f"ok: {len(playbooks)} playbooks, {len(classifier.rules)} classifier rules in {directory}"
    )
    for pb in playbooks:
        matchers = ", ".join(str(m) for m in pb.matchers) or "-"
        print(f"  {pb.name} [{pb.error_type.value}] {pb.action_type} matchers: {matchers}")
        _print_windows(settings.windows, pb.brakes.mute_time_intervals, "mute", mute=True)
        _print_windows(settings.windows, pb.brakes.active_time_intervals, "active", mute=False)
    from receiver.tasks import load_tasks

    for task in load_tasks(directory):
        print(f"  task {task.name}: {task.describe()}, grace {task.grace}")
    windows = settings.windows
    if windows.named:
        print(f"time intervals: {len(windows.named)} (times in UTC)")
        _print_windows(windows, windows.mute, "global mute", mute=True)
        _print_windows(windows, windows.active, "global active", mute=False)
    return 0


def _print_windows(windows: Any, names: Sequence[str], kind: str, *, mute: bool) -> None:
    """Each name, and whether it holds actions back now: what a typo in a location or a
    range would otherwise hide until the window came (or did not)."""
    from datetime import UTC, datetime

    now = datetime.now(UTC).replace(second=0, microsecond=0)
    for name in names:
        muting, active = ((name,), ()) if mute else ((), (name,))
        held = windows.holding(now, muting, active)
        if held is None:
            state = "not holding actions now"
        else:
            ends = windows.held_until(now, muting, active)
            state = "holding actions now, " + (
                f"until {ends.isoformat()}" if ends else "no end within 31 days"
            )
        print(f"    {kind} time interval {name!r}: {state}")


def cmd_replay(args: argparse.Namespace) -> int:
    """Show what would happen to a payload: classification, playbook and the worker's
    decision (the same rules), nothing run."""
    from pydantic import ValidationError

    from receiver.catalog import load_files
    from receiver.payloads import AlertmanagerWebhook, ExceptionReport
    from receiver.replay import replay
    from receiver.signals import from_exception, from_webhook

    settings = _settings(args)
    directory = Path(args.playbooks) if args.playbooks else settings.playbooks
    playbooks, classifier = load_files(directory, settings.param_scope())
    data = json.loads(Path(args.file).read_text(encoding="utf-8"))
    try:
        if isinstance(data, dict) and "alerts" in data:
            signals = from_webhook(AlertmanagerWebhook.model_validate(data), classifier)
        else:
            signals = [from_exception(ExceptionReport.model_validate(data), classifier)]
    except ValidationError as exc:
        print(f"invalid payload: {exc}", file=sys.stderr)
        return 2
    for line in replay(settings, playbooks, classifier, signals):
        print(line)
    return 0


def _print_rows(rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    print("\t".join(columns))
    for row in rows:
        print("\t".join("" if row.get(c) is None else str(row.get(c)) for c in columns))


_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(text: str) -> float:
    """``90s``, ``30m``, ``1h30m``, ``2d`` -> seconds."""
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 30m, 1h30m, 2d)")
    return sum(float(n) * _UNIT[u] for n, u in parts)


@contextlib.asynccontextmanager
async def _store(args: argparse.Namespace) -> AsyncIterator[Database]:
    """The store the settings name, closed when the command is done with it."""
    from receiver.db.engine import open_database

    db = open_database(_settings(args).database_url)
    try:
        yield db
    finally:
        await db.dispose()


def cmd_pause(args: argparse.Namespace) -> int:
    """No action starts on any replica until ``autoheal resume`` (or ``--for`` passes)."""
    from datetime import UTC, datetime, timedelta

    from receiver import controls
    from receiver.notify import announcer

    settings = _settings(args)

    async def run() -> None:
        now = datetime.now(UTC)
        until = now + timedelta(seconds=args.for_) if args.for_ else None
        async with _store(args) as db:
            # Told through the outbox: the replicas' senders deliver it.
            paused = await controls.pause(db, announcer(settings), args.reason, _who(), now, until)
        ends = f" until {paused.until.isoformat()}" if paused.until else " until resumed"
        print(f"paused by {paused.by}{ends}: {paused.reason}")

    asyncio.run(run())
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from receiver import controls
    from receiver.notify import announcer

    settings = _settings(args)

    async def run() -> None:
        async with _store(args) as db:
            was, woke = await controls.resume(db, announcer(settings), _who(), datetime.now(UTC))
        if was is None:
            print("not paused")
        else:
            print(f"resumed (paused by {was.by}: {was.reason}); {woke} incident(s) due now")

    asyncio.run(run())
    return 0


def cmd_quarantine(args: argparse.Namespace) -> int:
    """List quarantined targets, or lift one (exit 1: it was not quarantined)."""
    from datetime import UTC, datetime

    from receiver import controls
    from receiver.db import repo

    async def run() -> int:
        async with _store(args) as db:
            if args.action == "list":
                async with db.reading() as conn:
                    held = await repo.quarantine.list_held(conn)
                for q in held:
                    print(f"{q.target}\tsince {q.since.isoformat()}\t{q.reason}")
                if not held:
                    print("no target is quarantined")
                return 0
            if not args.target:
                print("autoheal quarantine lift: name the TARGET", file=sys.stderr)
                return 2
            lifted = await controls.lift(db, args.target, _who(), datetime.now(UTC))
        if lifted is None:
            print(f"{args.target} is not quarantined", file=sys.stderr)
            return 1
        print(f"lifted the quarantine of {lifted.target} (since {lifted.since.isoformat()})")
        return 0

    return asyncio.run(run())


def _who() -> str:
    import getpass

    try:
        return f"{getpass.getuser()} (cli)"
    except (KeyError, OSError):
        return "cli"


def cmd_incidents(args: argparse.Namespace) -> int:
    from receiver.db import repo

    if args.follow:
        return _follow(args)

    async def run() -> None:
        async with _store(args) as db, db.reading() as conn:
            rows, total = await repo.list_incidents(
                conn, status=args.status, error_type=args.error_type, limit=args.limit, offset=0
            )
        _print_rows(
            rows,
            [
                "id",
                "status",
                "error_type",
                "task_name",
                "retry_count",
                "escalation_reason",
                "created_at",
            ],
        )
        print(f"({len(rows)} of {total})")

    asyncio.run(run())
    return 0


def cmd_incident(args: argparse.Namespace) -> int:
    """One incident: what it is, then each heal log with its output and evidence."""
    from receiver.db import repo

    async def run() -> Any:
        async with _store(args) as db, db.reading() as conn:
            return await repo.reports.timeline(conn, args.id)

    seen = asyncio.run(run())
    if seen is None:
        print(f"autoheal: no incident {args.id}", file=sys.stderr)
        return 1
    row, logs, notices, signals = seen.incident, seen.heal_logs, seen.notices, seen.signals
    if args.json:
        from receiver.jsoncodec import dumps

        print(dumps({**row, "signals": signals, "heal_logs": logs, "notices": notices}))
        return 0
    for line in incident_text(row, logs, notices, signals):
        print(line)
    return 0


def incident_text(
    row: dict[str, Any],
    logs: list[dict[str, Any]],
    notices: list[dict[str, Any]],
    signals: list[dict[str, Any]],
) -> list[str]:
    from receiver.evidence import summary

    status = row["status"] + (f" ({row['escalation_reason']})" if row["escalation_reason"] else "")
    lines = [
        f"incident {row['id']}: {row['task_name']} {row['error_type']} {row['severity']} {status}",
        f"  opened {row['created_at']}, target {row['target'] or '-'}, source {row['source']}",
        f"  {row['error_message'][:500]}",
    ]
    for sig in signals:
        times = f" ({sig['occurrences']} times)" if sig["occurrences"] > 1 else ""
        lines.append(
            f"- {sig['received_at']} {sig['status']} signal{times}: {sig['message'][:200]}"
        )
    for log in logs:
        took = f", {log['duration_ms']} ms" if log["finished_at"] else ""
        why = f" ({log['reason']})" if log["reason"] else ""
        lines.append(f"- {log['created_at']} attempt {log['attempt']}: {log['action_detail']}")
        lines.append(f"  {log['result']}{why}{took}")
        lines += [f"  | {text}" for text in (log["result_output"] or "").splitlines()[-20:]]
        seen = log.get("evidence")
        if not seen:
            continue
        lines.append(f"  before: {summary(seen)}")
        if seen.get("container", {}).get("health"):
            for run in seen["container"]["health"]["log"]:
                lines.append(f"  health {run['start']} exit {run['exit_code']}: {run['output']}")
        for part, key in (("logs", "text"), ("diagnostic", "output")):
            text = (seen.get(part) or {}).get(key)
            if text:
                cut = " (cut)" if seen[part].get("truncated") else ""
                lines.append(f"  {part}{cut}:")
                lines += [f"  > {t}" for t in text.splitlines()]
    for n in notices:
        sent = f" at {n['sent_at']}" if n["sent_at"] else ""
        error = f" ({n['last_error']})" if n["last_error"] else ""
        lines.append(
            f"- {n['created_at']} {n['event']} notice to {n['channel']}: {n['status']}{sent}{error}"
        )
    if row["resolved_at"]:
        healed = ", healed" if row["healed"] else ""
        lines.append(f"- {row['resolved_at']} resolved{healed}")
    return lines


def cmd_tasks(args: argparse.Namespace) -> int:
    """Declared tasks: their schedule, last run, next expected run and state."""
    from datetime import UTC, datetime

    from receiver.tasks import load_tasks
    from receiver.taskwatch import standing

    settings = _settings(args)
    declared = load_tasks(Path(args.directory) if args.directory else settings.playbooks)

    async def run() -> list[Any]:
        async with _store(args) as db, db.reading() as conn:
            return await standing(conn, declared, datetime.now(UTC))

    rows = []
    for task, state, h in asyncio.run(run()) if declared else []:
        row: dict[str, Any] = {"task": task.name, "schedule": task.describe()}
        if state is None or h is None:
            row["state"] = "not loaded yet (autoheal serve declares it)"
        else:
            row |= {
                "state": state.state.value,
                "last_run": h.last_ping,
                "last_outcome": h.last_outcome,
                "last_success": h.last_success,
                "next_expected": state.due,
            }
        rows.append(row)
    columns = ["task", "schedule", "state", "last_run", "last_outcome", "last_success"]
    _print_rows(rows, [*columns, "next_expected"])
    return 0


def _follow(args: argparse.Namespace) -> int:
    """A live tail: the latest incidents, then each one opened and each change of status of
    the ones shown (the last 1000), a line each, until Ctrl-C (or ``--for`` seconds)."""
    import time

    from receiver.db import repo

    def line(row: Any, what: str) -> str:
        why = f" ({row.escalation_reason})" if row.escalation_reason else ""
        target = f" {row.target}" if row.target else ""
        return (
            f"{row.updated_at:%Y-%m-%d %H:%M:%S} #{row.id} {what} {row.status}{why} "
            f"{row.error_type} {row.task_name}{target}"
        )

    async def run() -> None:
        shown: dict[int, str] = {}
        async with _store(args) as db:
            async with db.reading() as conn:
                latest, _ = await repo.list_incidents(
                    conn, status=None, error_type=None, limit=args.limit, offset=0
                )
            last_id = max((r["id"] for r in latest), default=0)
            async with db.reading() as conn:
                _, rows = await repo.reports.incidents_after(conn, 0, [r["id"] for r in latest])
            for row in sorted(rows, key=lambda r: r.id):
                print(line(row, "is"), flush=True)
                shown[row.id] = row.status
            ends = time.monotonic() + args.for_ if args.for_ else None
            while ends is None or time.monotonic() < ends:
                await asyncio.sleep(args.interval)
                async with db.reading() as conn:
                    new, now = await repo.reports.incidents_after(conn, last_id, list(shown))
                for row in now:
                    if shown.get(row.id) != row.status:
                        print(line(row, "is now"), flush=True)
                        shown[row.id] = row.status
                for row in new:
                    print(line(row, "opened,"), flush=True)
                    shown[row.id] = row.status
                    last_id = max(last_id, row.id)
                while len(shown) > 1000:
                    shown.pop(next(iter(shown)))

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
    return 0


def cmd_playbooks(args: argparse.Namespace) -> int:
    from receiver.db import repo

    async def run() -> None:
        async with _store(args) as db, db.reading() as conn:
            rows = await repo.list_playbooks(conn)
        _print_rows(
            rows,
            ["id", "name", "error_type", "action_type", "is_active", "success_count", "fail_count"],
        )

    asyncio.run(run())
    return 0


def cmd_knowledge(args: argparse.Namespace) -> int:
    from receiver.db import repo

    async def run() -> None:
        async with _store(args) as db, db.reading() as conn:
            rows = await repo.knowledge.list_knowledge(
                conn, error_type=args.error_type, playbook=args.playbook, limit=args.limit
            )
        _print_rows(
            rows,
            [
                "error_type",
                "playbook",
                "attempts",
                "successes",
                "failures",
                "success_rate",
                "mean_heal_seconds",
                "median_heal_seconds",
                "last_seen_at",
                "signature",
            ],
        )

    asyncio.run(run())
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from receiver.db.migrate import current_revision, upgrade

    async def run() -> str | None:
        async with _store(args) as db:
            await upgrade(db)
            return await current_revision(db)

    print(f"database at revision {asyncio.run(run())}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="autoheal", description=__doc__)
    parser.add_argument("--config", type=Path, help="YAML settings file (env vars win)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the service").set_defaults(func=cmd_serve)
    p = sub.add_parser("check", help="validate playbooks and classifier rules")
    p.add_argument("directory", nargs="?")
    p.set_defaults(func=cmd_check)
    p = sub.add_parser("replay", help="what would happen to a payload (nothing runs)")
    p.add_argument("file")
    p.add_argument("--playbooks")
    p.set_defaults(func=cmd_replay)
    p = sub.add_parser("pause", help="no action starts on any replica until resumed")
    p.add_argument("--reason", required=True, help="why (recorded, shown to people)")
    p.add_argument("--for", dest="for_", type=duration, help="ends by itself: 30m, 2h, 1d")
    p.set_defaults(func=cmd_pause)
    sub.add_parser("resume", help="end the pause").set_defaults(func=cmd_resume)
    p = sub.add_parser("quarantine", help="targets no automatic action touches: list, lift")
    p.add_argument("action", choices=["list", "lift"])
    p.add_argument("target", nargs="?", help="lift: the target, as listed")
    p.set_defaults(func=cmd_quarantine)
    p = sub.add_parser("incidents", help="list incidents")
    p.add_argument("--status")
    p.add_argument("--error-type")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--follow", "-f", action="store_true", help="then a line per change, live")
    p.add_argument("--interval", type=float, default=1.0, help="--follow: seconds between looks")
    p.add_argument("--for", dest="for_", type=duration, help="--follow: stop after 30s, 5m...")
    p.set_defaults(func=cmd_incidents)
    p = sub.add_parser("incident", help="one incident: heal logs, output, evidence")
    p.add_argument("id", type=int)
    p.add_argument("--json", action="store_true", help="as the API's JSON")
    p.set_defaults(func=cmd_incident)
    p = sub.add_parser("tasks", help="declared tasks: last run, next expected, state")
    p.add_argument("directory", nargs="?", help="playbooks directory (default: the settings')")
    p.set_defaults(func=cmd_tasks)
    sub.add_parser("playbooks", help="list playbooks with counts").set_defaults(func=cmd_playbooks)
    p = sub.add_parser("knowledge", help="what worked for which fault")
    p.add_argument("--error-type")
    p.add_argument("--playbook")
    p.add_argument("--limit", type=int, default=100)
    p.set_defaults(func=cmd_knowledge)
    db = sub.add_parser("db", help="database")
    dbsub = db.add_subparsers(dest="db_command", required=True)
    dbsub.add_parser("upgrade", help="apply migrations").set_defaults(func=cmd_db_upgrade)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except AutohealError as exc:
        print(f"autoheal: {exc}", file=sys.stderr)
        return 2
