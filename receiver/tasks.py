"""Declared tasks: a scheduler's jobs autoheal expects to hear from, as healthchecks.io does
for cron jobs. ``tasks.yaml`` beside the playbooks names each with a schedule (a cron
expression in a time zone, or an interval), a grace and an optional max_duration.

Pure: when a task's next run is due from its last ping, and what state it is in. The store
holds the pings (task_runs) and the worker's task watch reads them (receiver.taskwatch).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from receiver.domain import strict_severity
from receiver.errors import PlaybookError
from receiver.payloads import Labels

TASKS_FILE = "tasks.yaml"


class TaskModel(BaseModel):
    """One declared task, as written in tasks.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, StringConstraints(min_length=1, max_length=100, strip_whitespace=True)]
    schedule: str | None = None  # cron, 5 fields (cronsim: healthchecks.io's parser)
    every_minutes: float | None = Field(default=None, gt=0, le=366 * 24 * 60)
    timezone: str = "UTC"
    grace_minutes: float = Field(default=5, ge=0, le=7 * 24 * 60)
    max_duration_minutes: float | None = Field(default=None, gt=0, le=7 * 24 * 60)
    severity: str | None = None
    labels: Labels = Field(default_factory=dict)  # on its incidents (playbooks match them)

    @field_validator("severity")
    @classmethod
    def _severity(cls, value: str | None) -> str | None:
        return strict_severity(value).value if value is not None else None

    @model_validator(mode="after")
    def _check(self) -> TaskModel:
        if (self.schedule is None) == (self.every_minutes is None):
            raise ValueError("give schedule (cron) or every_minutes, one of them")
        try:
            zone = ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"timezone: unknown time zone {self.timezone!r}") from exc
        if self.schedule is not None:
            from cronsim import CronSim, CronSimError

            try:
                CronSim(self.schedule, datetime(2026, 1, 1, tzinfo=zone))
            except CronSimError as exc:
                raise ValueError(
                    f"schedule: {self.schedule!r} is not a cron expression: {exc}"
                ) from exc
        return self


@dataclass(frozen=True, slots=True)
class Task:
    """A declared task, validated."""

    name: str
    schedule: str | None
    every: timedelta | None
    zone: ZoneInfo
    grace: timedelta
    max_duration: timedelta | None
    severity: str | None
    labels: Mapping[str, str]

    @classmethod
    def of(cls, m: TaskModel) -> Task:
        return cls(
            m.name,
            m.schedule,
            _span(m.every_minutes),
            ZoneInfo(m.timezone),
            timedelta(minutes=m.grace_minutes),
            _span(m.max_duration_minutes),
            m.severity,
            dict(m.labels),
        )

    def describe(self) -> str:
        if self.schedule is not None:
            return f"cron {self.schedule!r} ({self.zone.key})"
        assert self.every is not None
        return f"every {_minutes(self.every)}"

    def next_after(self, moment: datetime) -> datetime:
        """The first run due after ``moment`` (in the schedule's zone, DST included)."""
        if self.every is not None:
            return moment + self.every
        from cronsim import CronSim

        assert self.schedule is not None
        return next(CronSim(self.schedule, moment.astimezone(self.zone)))


class TaskState(enum.StrEnum):
    OK = "ok"  # heard from since its last due run
    LATE = "late"  # its run is due, within the grace
    MISSED = "missed"  # due and grace passed with no ping: a MISSED_RUN incident
    RUNNING = "running"  # started, within max_duration
    OVERRUN = "overrun"  # started longer ago than max_duration: a RUN_TOO_LONG incident


@dataclass(frozen=True, slots=True)
class Expected:
    """Where a task stands at ``now``."""

    state: TaskState
    due: datetime  # when its next run is (or was) expected to start
    since: datetime  # its last ping, or when it was declared


def expect(
    task: Task,
    last_ping: datetime | None,
    declared_at: datetime,
    running_since: datetime | None,
    now: datetime,
) -> Expected:
    """The task's state: a run is due at the first scheduled time after its last ping (or
    after it was declared) and missed once that plus the grace has passed without one. A
    run still going (``running_since``) is watched by its max_duration when it has one;
    without one, a run that never ends is noticed as the next one missed."""
    since = max(last_ping, declared_at) if last_ping is not None else declared_at
    due = task.next_after(since)
    if running_since is not None and task.max_duration is not None:
        overrun = now - running_since > task.max_duration
        return Expected(TaskState.OVERRUN if overrun else TaskState.RUNNING, due, since)
    if now > due + task.grace:
        return Expected(TaskState.MISSED, due, since)  # a run without an end counts too
    if running_since is not None:
        return Expected(TaskState.RUNNING, due, since)
    if now > due:
        return Expected(TaskState.LATE, due, since)
    return Expected(TaskState.OK, due, since)


def load_tasks(directory: Path) -> tuple[Task, ...]:
    """``tasks.yaml`` in the playbooks directory (absent: no task is declared)."""
    path = directory / TASKS_FILE
    if not path.is_file():
        return ()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise PlaybookError(TASKS_FILE, None, None, f"not YAML: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("tasks", []), list):
        raise PlaybookError(TASKS_FILE, None, "tasks", "must be a list under 'tasks:'")
    tasks: list[Task] = []
    seen: set[str] = set()
    for index, item in enumerate(data.get("tasks") or []):
        name = item.get("name") if isinstance(item, dict) else None
        try:
            model = TaskModel.model_validate(item)
        except ValueError as exc:
            where = str(name) if name else f"tasks[{index}]"
            raise PlaybookError(TASKS_FILE, where, _field(exc), _message(exc), kind="task") from exc
        if model.name in seen:
            raise PlaybookError(TASKS_FILE, model.name, "name", "declared twice", kind="task")
        seen.add(model.name)
        tasks.append(Task.of(model))
    return tuple(tasks)


def _field(exc: Any) -> str | None:
    errors = getattr(exc, "errors", None)
    if callable(errors) and errors() and errors()[0].get("loc"):
        return ".".join(str(p) for p in errors()[0]["loc"])
    return None


def _message(exc: Any) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors) and errors():
        return str(errors()[0]["msg"])
    return str(exc)


def _span(minutes: float | None) -> timedelta | None:
    return timedelta(minutes=minutes) if minutes is not None else None


def _minutes(span: timedelta) -> str:
    minutes = span.total_seconds() / 60
    return f"{minutes:g} min"
