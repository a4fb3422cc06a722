"""Playbook loading, validation errors that name file/playbook/field, and matching."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError

from receiver.actions import ACTIONS
from receiver.domain import ErrorType, Severity, Signal, Source
from receiver.errors import PlaybookError, SlotError
from receiver.playbooks import candidates, load_playbooks, parse_playbooks
from receiver.templating import render

ROOT = Path(__file__).resolve().parent.parent
SEED = load_playbooks(ROOT / "playbooks")


def signal(
    error_type: ErrorType, message: str, severity: Severity = Severity.P1, **labels: str
) -> Signal:
    return Signal(
        source=Source.SCHEDULER,
        idempotency_key="k",
        incident_key="i",
        firing=True,
        task_name="t",
        error_type=error_type,
        severity=severity,
        message=message,
        labels=labels,
    )


def test_all_seven_seed_playbooks_load() -> None:
    # The seed's seven, and the scheduler's own two (scheduler.yaml: missed and long runs).
    scheduler = {"Scheduler missed a run", "Run takes too long"}
    assert {p.name for p in SEED} - scheduler == {
        "Docker DNS resolution failure",
        "DB connection refused",
        "App OOM restart",
        "Scheduler OOM restart",
        "PostgreSQL SSL connection dropped",
        "Google Drive auth failure",
        "Crawler HTTP 429 rate limit",
    }
    by_name = {p.name: p for p in SEED}
    assert by_name["App OOM restart"].max_retries == 2
    assert by_name["App OOM restart"].cooldown_minutes == 60
    assert by_name["Google Drive auth failure"].cooldown_minutes == 240
    assert by_name["Crawler HTTP 429 rate limit"].severity_min is Severity.P3
    assert by_name["Crawler HTTP 429 rate limit"].action_params == {"wait_minutes": 30}


@pytest.mark.parametrize(
    ("container", "expected"),
    [("momo-scheduler", "Scheduler OOM restart"), ("momo-pro-system", "App OOM restart")],
)
def test_oom_playbooks_no_longer_overlap(container: str, expected: str) -> None:
    found = candidates(SEED, signal(ErrorType.OOM, "Worker was sent SIGKILL", container=container))
    assert [p.name for p in found] == [expected]
    action = ACTIONS[found[0].action_type]
    params = action.params_model.model_validate(
        render(found[0].action_params, {"container": container}, {})
    )
    assert action.target(params) == f"local/{container}"


def test_oom_without_container_label_matches_nothing() -> None:
    assert candidates(SEED, signal(ErrorType.OOM, "MemoryError")) == []


def test_severity_minimum() -> None:
    oom = signal(ErrorType.OOM, "SIGKILL", Severity.P2, container="momo-scheduler")
    assert candidates(SEED, oom) == []  # OOM playbooks need P1
    crawl = signal(ErrorType.CRAWLER_FAIL, "rate limit", Severity.P3)
    assert [p.name for p in candidates(SEED, crawl)] == ["Crawler HTTP 429 rate limit"]


def test_pattern_must_match() -> None:
    assert candidates(SEED, signal(ErrorType.SSL_FAIL, "certificate expired")) == []
    found = candidates(SEED, signal(ErrorType.SSL_FAIL, "ssl syscall ERROR: EOF"))
    assert [p.name for p in found] == ["PostgreSQL SSL connection dropped"]


def test_ordering_priority_then_specificity() -> None:
    text = textwrap.dedent("""
        playbooks:
          - name: generic
            error_type: OOM
            action: {type: wait_retry, params: {wait_minutes: 1}}
          - name: specific
            error_type: OOM
            matchers: ['container="a"']
            action: {type: wait_retry, params: {wait_minutes: 1}}
          - name: urgent
            error_type: OOM
            priority: 5
            action: {type: wait_retry, params: {wait_minutes: 1}}
    """)
    found = candidates(parse_playbooks(text, "t.yaml"), signal(ErrorType.OOM, "x", container="a"))
    assert [p.name for p in found] == ["urgent", "specific", "generic"]


BAD = [
    ("action: {type: rm_rf, params: {}}", "action.type", "unknown action"),
    (
        "action: {type: docker_restart, params: {container: 'a b'}}",
        "action.params.container",
        "container name",
    ),
    (
        "action: {type: docker_restart, params: {container: x, extra: 1}}",
        "action.params.extra",
        "Extra inputs",
    ),
    ("action: {type: docker_restart, params: {}}", "action.params.container", "required"),
    (
        "action: {type: docker_restart, params: {container: '${labels.}'}}",
        "action.params.container",
        "bad template",
    ),
    (
        "action: {type: wait_retry, params: {wait_minutes: -1}}",
        "action.params.wait_minutes",
        "greater than",
    ),
    (
        "regex: ['(']\n    action: {type: alert_only, params: {message: m}}",
        "regex",
        "does not compile",
    ),
    (
        "matchers: ['nope']\n    action: {type: alert_only, params: {message: m}}",
        "matchers.0",
        "not a matcher",
    ),
    (
        "severity_min: urgent\n    action: {type: alert_only, params: {message: m}}",
        "severity_min",
        "unknown severity",
    ),
    (
        "max_retries: 0\n    action: {type: alert_only, params: {message: m}}",
        "max_retries",
        "greater than",
    ),
    ("colour: red\n    action: {type: alert_only, params: {message: m}}", "colour", "Extra inputs"),
]


@pytest.mark.parametrize(("body", "field", "message"), BAD)
def test_errors_name_file_playbook_and_field(body: str, field: str, message: str) -> None:
    text = f"playbooks:\n  - name: broken one\n    error_type: OOM\n    {body}\n"
    with pytest.raises(PlaybookError) as err:
        parse_playbooks(text, "mine.yaml")
    assert err.value.file == "mine.yaml"
    assert err.value.playbook == "broken one"
    assert err.value.field == field
    assert message in str(err.value)


def test_duplicate_names_across_files(tmp_path: Path) -> None:
    one = "playbooks:\n  - name: same\n    error_type: OOM\n    action: {type: alert_only, params: {message: m}}\n"
    (tmp_path / "a.yaml").write_text(one)
    (tmp_path / "b.yml").write_text(one)
    with pytest.raises(PlaybookError, match="duplicate, first defined in a.yaml"):
        load_playbooks(tmp_path)


def test_invalid_yaml_and_missing_dir(tmp_path: Path) -> None:
    with pytest.raises(PlaybookError, match="not valid YAML"):
        parse_playbooks("playbooks: [", "x.yaml")
    with pytest.raises(PlaybookError, match="does not exist"):
        load_playbooks(tmp_path / "nope")


INJECTIONS = [
    "momo-db; rm -rf /",
    "$(id)",
    "`id`",
    "momo-db\nrm -rf /",
    "../../etc",
    "a" * 10_000,
    "momо-db",  # Cyrillic 'о'
    "ｍｏｍｏ-db",  # full-width
    "-rf",
    "momo db",
    "",
]


@pytest.mark.parametrize("value", INJECTIONS)
def test_label_slots_refuse_injection(value: str) -> None:
    playbook = next(p for p in SEED if p.name == "Scheduler OOM restart")
    action = ACTIONS[playbook.action_type]
    with pytest.raises(ValidationError):
        action.params_model.model_validate(render(playbook.action_params, {"container": value}, {}))


def test_missing_label_is_a_slot_error() -> None:
    with pytest.raises(SlotError, match=r"labels\.container is not set"):
        render({"container": "${labels.container}"}, {}, {})
