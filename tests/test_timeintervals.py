"""Time intervals in Alertmanager's syntax, at fixed clocks: what each field means, time
zones, daylight saving changes, when a window ends, and the errors a typo gets."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from receiver.timeintervals import HORIZON, TimeIntervalModel, Windows, build_windows


def windows(*specs: dict[str, Any], mute: bool = True, name: str = "w") -> Windows:
    model = TimeIntervalModel.model_validate({"name": name, "time_intervals": list(specs)})
    return build_windows([model], [name] if mute else [], [] if mute else [name])


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def held(w: Windows, at: datetime) -> bool:
    return w.holding(at) is not None


@pytest.mark.parametrize(
    ("spec", "at", "inside"),
    [
        # times: the start is in, the end is out; 24:00 ends the day
        ({"times": [{"start_time": "09:00", "end_time": "17:00"}]}, utc(2026, 12, 4, 9), True),
        ({"times": [{"start_time": "09:00", "end_time": "17:00"}]}, utc(2026, 12, 4, 17), False),
        (
            {"times": [{"start_time": "09:00", "end_time": "17:00"}]},
            utc(2026, 12, 4, 16, 59),
            True,
        ),
        ({"times": [{"start_time": "22:00", "end_time": "24:00"}]}, utc(2026, 12, 4, 23, 59), True),
        # weekdays: Sunday is 0, ranges inclusive, any case
        ({"weekdays": ["monday:friday"]}, utc(2026, 12, 4), True),  # a Friday
        ({"weekdays": ["monday:friday"]}, utc(2026, 12, 5), False),  # Saturday
        ({"weekdays": ["Saturday", "sunday"]}, utc(2026, 12, 6), True),
        # days of month: negative from the end; the 31st never in a 30-day month
        ({"days_of_month": ["-1"]}, utc(2028, 2, 29), True),  # leap year
        ({"days_of_month": ["-1"]}, utc(2026, 2, 28), True),
        ({"days_of_month": ["-1"]}, utc(2026, 2, 27), False),
        ({"days_of_month": ["-3:-1"]}, utc(2026, 4, 28), True),
        ({"days_of_month": ["31"]}, utc(2026, 4, 30), False),
        ({"days_of_month": ["25:31"]}, utc(2026, 2, 28), True),  # clamped to the month
        # months by name or number; years
        ({"months": ["december"]}, utc(2026, 12, 1), True),
        ({"months": ["1:3", "november"]}, utc(2026, 12, 1), False),
        ({"months": ["march:may"]}, utc(2026, 4, 1), True),
        ({"years": ["2025:2026"]}, utc(2026, 12, 31, 23, 59), True),
        ({"years": ["2025:2026"]}, utc(2027, 1, 1), False),
        # every field set must match
        (
            {
                "weekdays": ["saturday"],
                "times": [{"start_time": "02:00", "end_time": "04:00"}],
                "months": ["december"],
            },
            utc(2026, 12, 5, 3),
            True,
        ),
        (
            {"weekdays": ["saturday"], "times": [{"start_time": "02:00", "end_time": "04:00"}]},
            utc(2026, 12, 4, 3),
            False,
        ),
        # location: the fields are read in that zone (UTC 23:30 Friday is Saturday in Tokyo)
        ({"weekdays": ["saturday"], "location": "Asia/Tokyo"}, utc(2026, 12, 4, 23, 30), True),
        (
            {
                "times": [{"start_time": "09:00", "end_time": "17:00"}],
                "location": "America/New_York",
            },
            utc(2026, 12, 4, 14),  # 09:00 EST
            True,
        ),
    ],
)
def test_a_spec_contains_what_alertmanager_says(
    spec: dict[str, Any], at: datetime, inside: bool
) -> None:
    assert held(windows(spec), at) is inside


def test_several_specs_are_any_of_them() -> None:
    w = windows({"weekdays": ["saturday"]}, {"days_of_month": ["1"]})
    assert held(w, utc(2026, 12, 5)) and held(w, utc(2026, 12, 1))
    assert not held(w, utc(2026, 12, 2))


def test_active_intervals_hold_outside_them() -> None:
    w = windows({"weekdays": ["monday:friday"]}, mute=False)
    assert w.holding(utc(2026, 12, 4)) is None
    assert w.holding(utc(2026, 12, 5)) == "outside active time intervals 'w'"
    # Back to Monday 00:00 UTC.
    assert w.held_until(utc(2026, 12, 5, 10)) == utc(2026, 12, 7)


def test_a_playbook_adds_its_own_names() -> None:
    night = TimeIntervalModel.model_validate(
        {
            "name": "night",
            "time_intervals": [{"times": [{"start_time": "00:00", "end_time": "06:00"}]}],
        }
    )
    w = build_windows([night], [], [])
    assert w.holding(utc(2026, 12, 4, 3)) is None
    assert w.holding(utc(2026, 12, 4, 3), mute=["night"]) == "in mute time interval 'night'"
    assert w.held_until(utc(2026, 12, 4, 3), mute=["night"]) == utc(2026, 12, 4, 6)


def test_a_window_ends_at_its_end_time_in_its_zone() -> None:
    w = windows(
        {
            "weekdays": ["saturday"],
            "times": [{"start_time": "01:00", "end_time": "05:30"}],
            "location": "Europe/Berlin",
        }
    )
    start = utc(2026, 12, 5, 1)  # 02:00 CET
    assert held(w, start)
    assert w.held_until(start) == utc(2026, 12, 5, 4, 30)  # 05:30 CET


def test_daylight_saving_spring_forward() -> None:
    # Berlin, 29 March 2026: 02:00 CET jumps to 03:00 CEST (01:00 UTC). A window
    # 01:00-02:30 local ends at the jump, since 02:00-02:59 never happens that night.
    w = windows(
        {"times": [{"start_time": "01:00", "end_time": "02:30"}], "location": "Europe/Berlin"}
    )
    assert held(w, utc(2026, 3, 29, 0, 30))  # 01:30 CET
    assert not held(w, utc(2026, 3, 29, 1, 0))  # 03:00 CEST
    assert w.held_until(utc(2026, 3, 29, 0, 30)) == utc(2026, 3, 29, 1, 0)


def test_daylight_saving_fall_back() -> None:
    # Berlin, 25 October 2026: 03:00 CEST falls back to 02:00 CET (01:00 UTC); 02:00-03:00
    # local happens twice, so a window over it lasts two hours.
    w = windows(
        {"times": [{"start_time": "02:00", "end_time": "03:00"}], "location": "Europe/Berlin"}
    )
    assert held(w, utc(2026, 10, 25, 0, 15)) and held(w, utc(2026, 10, 25, 1, 45))
    assert w.held_until(utc(2026, 10, 25, 0, 15)) == utc(2026, 10, 25, 2, 0)
    # The same window a day later is an hour again, at a CET offset.
    assert w.held_until(utc(2026, 10, 26, 1, 15)) == utc(2026, 10, 26, 2, 0)


def test_a_window_without_an_end_in_sight() -> None:
    w = windows({"years": ["2026"]})
    assert w.held_until(utc(2026, 1, 10)) is None  # the end is more than HORIZON away
    assert w.held_until(utc(2026, 12, 20)) == utc(2027, 1, 1)
    assert HORIZON.days == 31


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"times": [{"start_time": "25:00", "end_time": "26:00"}]}, "is not HH:MM"),
        ({"times": [{"start_time": "10:00", "end_time": "09:00"}]}, "is not before"),
        ({"times": [{"start_time": "10:00", "end_time": "10:00"}]}, "is not before"),
        ({"weekdays": ["funday"]}, "'funday' is not a weekday"),
        ({"weekdays": ["friday:monday"]}, "ends before it begins"),
        ({"days_of_month": ["0"]}, "out of range"),
        ({"days_of_month": ["-1:5"]}, "negative start needs a negative end"),
        ({"days_of_month": ["10:5"]}, "ends before it begins"),
        ({"months": ["13"]}, "out of range"),
        ({"months": ["smarch"]}, "is not a number"),
        ({"years": ["2027:2026"]}, "ends before it begins"),
        ({"location": "Mars/Olympus"}, "unknown time zone"),
    ],
)
def test_a_typo_is_refused_with_where_it_is(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        windows(spec)
    assert "'w', time_intervals.0" in str(caught.value)


def test_names_must_exist_and_be_unique() -> None:
    one = TimeIntervalModel.model_validate({"name": "a", "time_intervals": [{}]})
    with pytest.raises(ValueError, match="defined twice"):
        build_windows([one, one], [], [])
    with pytest.raises(ValueError, match="mute_time_intervals: no time interval named 'b'"):
        build_windows([one], ["b"], [])
    with pytest.raises(ValueError, match="active_time_intervals: no time interval named 'c'"):
        build_windows([one], [], ["c"])
