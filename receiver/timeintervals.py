"""Time intervals in Alertmanager's syntax (its ``time_intervals`` section), so an operator
can paste the maintenance windows Alertmanager already mutes notifications with.

A named interval is a list of specs; a spec contains an instant when every field it sets
matches (``times``, ``weekdays``, ``days_of_month``, ``months``, ``years``, all in its
``location``, UTC by default); a name contains an instant when any of its specs does. The
semantics follow Alertmanager's timeinterval package: end times are exclusive, ``24:00``
ends a day, negative days of month count from the month's end, ranges are inclusive and
written ``monday:friday``.

``Windows`` answers the worker's two questions: is acting held back now (a mute interval
contains the instant, or active intervals are set and none does), and when does that end.
"""

from __future__ import annotations

import calendar
import heapq
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta, tzinfo
from functools import cache
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

_WEEKDAYS = {
    name: i
    for i, name in enumerate(
        ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
    )
}
_MONTHS = {name.lower(): i for i, name in enumerate(calendar.month_name) if name}
_TIME = re.compile(r"^(?:([01][0-9]|2[0-3]):([0-5][0-9])|(24):(00))$")
# How far ahead the end of a window is looked for; beyond it, look again then.
HORIZON = timedelta(days=31)

Name = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]


class _TimeRangeModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start_time: str
    end_time: str


class _SpecModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    times: list[_TimeRangeModel] | None = None
    weekdays: list[str] | None = None
    days_of_month: list[str] | None = None
    months: list[str] | None = None
    years: list[str] | None = None
    location: str | None = None


class TimeIntervalModel(BaseModel):
    """One entry of ``time_intervals:`` as Alertmanager writes it."""

    model_config = ConfigDict(extra="forbid")
    name: Name
    time_intervals: list[_SpecModel] = Field(min_length=1)


@dataclass(frozen=True, slots=True)
class Spec:
    """One time interval spec; None: the field is not set (any value matches)."""

    times: tuple[tuple[int, int], ...] | None = None  # minutes of the day, end exclusive
    weekdays: tuple[tuple[int, int], ...] | None = None  # 0 = Sunday
    days_of_month: tuple[tuple[int, int], ...] | None = None  # negative: from the end
    months: tuple[tuple[int, int], ...] | None = None
    years: tuple[tuple[int, int], ...] | None = None
    location: tzinfo = UTC

    def contains(self, instant: datetime) -> bool:
        t = instant.astimezone(self.location)
        if self.times is not None:
            minute = t.hour * 60 + t.minute
            if not any(a <= minute < b for a, b in self.times):
                return False
        if self.days_of_month is not None and not _in_days(self.days_of_month, t):
            return False
        if self.months is not None and not any(a <= t.month <= b for a, b in self.months):
            return False
        if self.weekdays is not None:
            weekday = (t.weekday() + 1) % 7  # Python counts from Monday, Alertmanager Sunday
            if not any(a <= weekday <= b for a, b in self.weekdays):
                return False
        return self.years is None or any(a <= t.year <= b for a, b in self.years)

    def turning_points(self, start: datetime, end: datetime) -> Iterable[datetime]:
        """The instants in [start, end) where this spec can begin or stop containing one:
        the local midnights and the starts and ends of its times."""
        local = start.astimezone(self.location)
        minutes = sorted({0, *(m for pair in self.times or () for m in pair if m < 1440)})
        day = local.date()
        while True:
            for minute in minutes:
                wall = datetime.combine(day, time(minute // 60, minute % 60), self.location)
                at = wall.astimezone(UTC)
                if at >= end:
                    return
                if at > start:
                    yield at
            day += timedelta(days=1)


def _in_days(ranges: Sequence[tuple[int, int]], t: datetime) -> bool:
    length = calendar.monthrange(t.year, t.month)[1]
    for a, b in ranges:
        begin = length + a + 1 if a < 0 else a
        end = length + b + 1 if b < 0 else b
        if begin > length:  # e.g. the 31st in a 30-day month: no day
            continue
        if begin <= t.day <= min(end, length):
            return True
    return False


@dataclass(frozen=True, slots=True)
class Windows:
    """The named intervals, and which of them mute actions or are the only times actions
    may run, globally (a playbook adds its own names)."""

    named: Mapping[str, tuple[Spec, ...]] = field(default_factory=dict)
    mute: tuple[str, ...] = ()
    active: tuple[str, ...] = ()

    def holding(
        self, instant: datetime, mute: Sequence[str] = (), active: Sequence[str] = ()
    ) -> str | None:
        """Why acting is held back at ``instant`` (None: it is not): the mute interval that
        contains it, or the active intervals none of which does."""
        for name in (*self.mute, *mute):
            if any(s.contains(instant) for s in self.named[name]):
                return f"in mute time interval {name!r}"
        names = (*self.active, *active)
        if names and not any(s.contains(instant) for n in names for s in self.named[n]):
            return "outside active time intervals " + ", ".join(repr(n) for n in names)
        return None

    def held_until(
        self, now: datetime, mute: Sequence[str] = (), active: Sequence[str] = ()
    ) -> datetime | None:
        """The first instant after ``now`` at which acting is no longer held back, if it is
        within HORIZON. Only a spec's turning points can change the answer, plus the jump of
        a daylight saving change, which the search between two points finds."""
        end = now + HORIZON
        specs = {s for n in (*self.mute, *mute, *self.active, *active) for s in self.named[n]}
        # Merged lazily: a window that ends within hours costs a few points, not a month's.
        points = heapq.merge(*(s.turning_points(now, end) for s in specs))
        before = now
        for point in points:
            if point <= before:
                continue
            if self.holding(point, mute, active) is None:
                return self._first_free(before, point, mute, active)
            before = point
        return None

    def _first_free(
        self, held: datetime, free: datetime, mute: Sequence[str], active: Sequence[str]
    ) -> datetime:
        """Bisect to the minute between a held instant and a free one."""
        step = timedelta(minutes=1)
        while free - held > step:
            middle = held + (free - held) / 2
            middle = middle.replace(second=0, microsecond=0)
            if middle <= held:
                middle = held + step
            if middle >= free:
                break
            if self.holding(middle, mute, active) is None:
                free = middle
            else:
                held = middle
        return free

    def unknown(self, names: Iterable[str]) -> list[str]:
        return [n for n in names if n not in self.named]


def build_windows(
    intervals: Sequence[TimeIntervalModel], mute: Sequence[str], active: Sequence[str]
) -> Windows:
    """Compile the ``time_intervals`` section; ValueError names the interval and field."""
    named: dict[str, tuple[Spec, ...]] = {}
    for interval in intervals:
        if interval.name in named:
            raise ValueError(f"time_intervals: {interval.name!r} is defined twice")
        specs = []
        for i, spec in enumerate(interval.time_intervals):
            try:
                specs.append(_spec(spec))
            except ValueError as exc:
                raise ValueError(
                    f"time_intervals: {interval.name!r}, time_intervals.{i}: {exc}"
                ) from None
        named[interval.name] = tuple(specs)
    windows = Windows(named, tuple(mute), tuple(active))
    for key, names in (("mute_time_intervals", mute), ("active_time_intervals", active)):
        missing = windows.unknown(names)
        if missing:
            raise ValueError(f"{key}: no time interval named {missing[0]!r}")
    return windows


def _spec(model: _SpecModel) -> Spec:
    return Spec(
        times=None if model.times is None else tuple(_times(t) for t in model.times),
        weekdays=_ranges(model.weekdays, "weekdays", _weekday, 0, 6),
        days_of_month=_days(model.days_of_month),
        months=_ranges(model.months, "months", _month, 1, 12),
        years=_ranges(model.years, "years", _number, 0, 9999),
        location=location(model.location),
    )


def _times(model: _TimeRangeModel) -> tuple[int, int]:
    start, end = _minute(model.start_time), _minute(model.end_time)
    if start >= end:
        raise ValueError(f"times: start_time {model.start_time} is not before {model.end_time}")
    return start, end


def _minute(text: str) -> int:
    m = _TIME.match(text.strip())
    if m is None:
        raise ValueError(f"times: {text!r} is not HH:MM (00:00 to 24:00)")
    hours, minutes = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
    return int(hours) * 60 + int(minutes)


def _number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None


def _weekday(text: str) -> int:
    if text not in _WEEKDAYS:
        raise ValueError(f"{text!r} is not a weekday")
    return _WEEKDAYS[text]


def _month(text: str) -> int:
    return _MONTHS[text] if text in _MONTHS else _number(text)


def _split(text: str, key: str) -> tuple[str, str]:
    parts = text.strip().lower().split(":")
    if len(parts) == 1:
        return parts[0], parts[0]
    if len(parts) != 2:
        raise ValueError(f"{key}: {text!r} is not a value or a range a:b")
    return parts[0], parts[1]


def _ranges(
    values: list[str] | None, key: str, parse: Callable[[str], int], low: int, high: int
) -> tuple[tuple[int, int], ...] | None:
    if values is None:
        return None
    out = []
    for text in values:
        a, b = _split(text, key)
        try:
            begin, end = parse(a), parse(b)
        except ValueError as exc:
            raise ValueError(f"{key}: {exc}") from None
        if not (low <= begin <= high and low <= end <= high):
            raise ValueError(f"{key}: {text!r} is out of range ({low} to {high})")
        if begin > end:
            raise ValueError(f"{key}: {text!r} ends before it begins")
        out.append((begin, end))
    return tuple(out)


def _days(values: list[str] | None) -> tuple[tuple[int, int], ...] | None:
    if values is None:
        return None
    out = []
    for text in values:
        a, b = _split(text, "days_of_month")
        try:
            begin, end = _number(a), _number(b)
        except ValueError as exc:
            raise ValueError(f"days_of_month: {exc}") from None
        for day in (begin, end):
            if day == 0 or not -31 <= day <= 31:
                raise ValueError(f"days_of_month: {day} is out of range (1 to 31, -31 to -1)")
        if begin < 0 < end:
            raise ValueError(f"days_of_month: {text!r}: a negative start needs a negative end")
        # Months of 28 days or more: an order that is wrong in every month is refused.
        if (28 + begin if begin < 0 else begin) > (28 + end if end < 0 else end):
            raise ValueError(f"days_of_month: {text!r} ends before it begins")
        out.append((begin, end))
    return tuple(out)


@cache
def location(name: str | None) -> tzinfo:
    """An IANA time zone; "Local" is this machine's (TZ, else /etc/localtime); None: UTC."""
    if name is None or name == "UTC":
        return UTC
    if name == "Local":
        tz = os.environ.get("TZ", "").lstrip(":")
        if tz:
            return location(tz)
        try:
            with open("/etc/localtime", "rb") as f:
                return ZoneInfo.from_file(f, key="localtime")
        except OSError:
            return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"location: unknown time zone {name!r}") from None
