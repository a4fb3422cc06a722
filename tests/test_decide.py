"""The worker's rules as plain values: no database, no HTTP, no clock.

Each table is one rule (or the order of several): an incident, its plan, the store's facts,
and the decision expected. README's "Incident lifecycle", "Approval" and the guards of
"Playbooks" each have their rows here; a new rule is a function in decide.py and a table.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from receiver.actions.base import ActionParams
from receiver.alertmanager_api import AlertState
from receiver.brakes import Brakes
from receiver.domain import (
    ErrorType,
    EscalationReason,
    Guard,
    HealResult,
    IncidentStatus,
    LogReason,
    Paused,
    Quarantined,
    ResolveKind,
    Severity,
    Source,
)
from receiver.errors import SlotError
from receiver.matchers import parse_matcher
from receiver.playbooks import Playbook
from receiver.textmatch import TextPatterns
from receiver.timeintervals import TimeIntervalModel, build_windows
from receiver.worker.decide import BUSY_RETRY, after_action, decide, verdict
from receiver.worker.decisions import (
    AskApproval,
    Case,
    Decision,
    Defer,
    Escalate,
    Facts,
    Held,
    Incident,
    Note,
    NotHeld,
    Policy,
    Resolve,
    Retry,
    Start,
    Verify,
    Wait,
)
from receiver.worker.holds import PAUSE_RECHECK
from receiver.worker.plan import Plan

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
S, M = timedelta(seconds=1), timedelta(minutes=1)
POLICY = Policy()
AT_NOW = Facts(NOW)


def playbook(**overrides: Any) -> Playbook:
    values: dict[str, Any] = {
        "name": "restart",
        "file": "t.yaml",
        "description": "",
        "error_type": ErrorType.DNS_FAIL,
        "pattern_list": (),
        "regex_list": (),
        "patterns": TextPatterns.build(),
        "matchers": (),
        "severity_min": Severity.P3,
        "action_type": "docker_restart",
        "action_params": {},
        "cooldown_minutes": 0,
        "max_retries": 3,
        "verify_seconds": 60,
        "dry_run": False,
        "active": True,
        "priority": 0,
    }
    return Playbook(**{**values, **overrides})


def plan(
    target: str = "web", *, exclusive: bool = True, pid: int = 1, refused: bool = False, **pb: Any
) -> Plan:
    params: ActionParams | SlotError = (
        SlotError("container", "a;b", "not a container name") if refused else ActionParams()
    )
    return Plan(playbook(**pb), pid, params, f"restart {target}", target, exclusive)


def incident(**overrides: Any) -> Incident:
    values: dict[str, Any] = {
        "id": 1,
        "source": Source.ALERTMANAGER.value,
        "status": IncidentStatus.OPEN,
        "retry_count": 0,
        "created_at": NOW - 10 * M,
    }
    return Incident(**{**values, **overrides})


def one(case: Case, policy: Policy = POLICY, facts: Facts = AT_NOW) -> Decision:
    [d] = decide([case], policy, facts)
    return d


# --- verify: did the repair hold? -------------------------------------------------------

AM, SCHED = Source.ALERTMANAGER.value, Source.SCHEDULER.value
VERIFYING = {"status": IncidentStatus.VERIFYING, "last_action_at": NOW - 5 * M}


@pytest.mark.parametrize(
    ("source", "deadline", "last_seen", "expected"),
    [
        # an alert still firing at the end of the window: the repair did not hold
        (AM, NOW, NOW - 9 * M, NotHeld()),
        (AM, NOW - S, NOW - 9 * M, NotHeld()),
        # within the window: its resolve may still come (through ingest)
        (AM, NOW + 30 * S, NOW - 9 * M, Wait(NOW + 30 * S)),
        # a scheduler task that failed again after the repair: not held, at once
        (SCHED, NOW + 30 * S, NOW - M, NotHeld()),
        # quiet through the window: healed
        (SCHED, NOW, NOW - 9 * M, Resolve(ResolveKind.QUIET)),
        # quiet so far, the window still open
        (SCHED, NOW + 30 * S, NOW - 9 * M, Wait(NOW + 30 * S)),
    ],
)
def test_verdict(source: str, deadline: datetime, last_seen: datetime, expected: Any) -> None:
    i = incident(source=source, verify_deadline=deadline, last_seen_at=last_seen, **VERIFYING)
    assert verdict(i, Facts(NOW)) == expected


# --- the rules that need no store, and their order --------------------------------------

P = plan()
REFUSED = plan(refused=True)
DRY = plan(dry_run=True)
ASKS = plan(approval_required=True, approval_timeout_minutes=30)
ASKS_DRY = plan(approval_required=True, dry_run=True)
NO_MATCH = "nearest playbook 'restart' wants severity P1"
SLOT_NOTE = Note(HealResult.REFUSED, LogReason.SLOT_REFUSED, str(REFUSED.params))
PENDING_APPROVAL = {"approval_state": "pending", "approval_attempt": 1}
AWAITING = {"status": IncidentStatus.AWAITING_APPROVAL, **PENDING_APPROVAL}


def dry_note(p: Plan, attempt: int) -> Note:
    return Note(
        HealResult.DRY_RUN, LogReason.DRY_RUN, f"dry run: would run {p.action_detail}", attempt
    )


def timeout_note(deadline: datetime, attempt: int) -> Note:
    output = f"no decision by {deadline.isoformat()}; nothing was run"
    return Note(HealResult.SKIPPED, LogReason.APPROVAL_TIMEOUT, output, attempt)


ALONE = [
    # (id, incident fields, plan, exhausted reason, policy, expected)
    ("acts", {}, P, None, POLICY, Start(P, 1)),
    ("second attempt", {"retry_count": 1}, P, None, POLICY, Start(P, 2)),
    (
        "no playbook",
        {},
        None,
        None,
        POLICY,
        Escalate(EscalationReason.NO_PLAYBOOK, detail=NO_MATCH),
    ),
    (
        "unfit label",
        {},
        REFUSED,
        None,
        POLICY,
        Escalate(EscalationReason.REFUSED, REFUSED, SLOT_NOTE, Guard.SLOT),
    ),
    (
        "retries used by failures",
        {"retry_count": 3},
        P,
        None,
        POLICY,
        Escalate(EscalationReason.MAX_RETRIES, P, guard=Guard.MAX_RETRIES),
    ),
    (
        "retries used by repairs that did not hold",
        {"retry_count": 3},
        P,
        EscalationReason.NOT_HEALED,
        POLICY,
        Escalate(EscalationReason.NOT_HEALED, P, guard=Guard.MAX_RETRIES),
    ),
    (
        "dry run everywhere",
        {},
        P,
        None,
        Policy(dry_run=True),
        Escalate(EscalationReason.DRY_RUN, P, dry_note(P, 1)),
    ),
    (
        "dry run playbook",
        {"retry_count": 1},
        DRY,
        None,
        POLICY,
        Escalate(EscalationReason.DRY_RUN, DRY, dry_note(DRY, 2)),
    ),
    ("approval asked", {}, ASKS, None, POLICY, AskApproval(ASKS, 1, NOW + 30 * M)),
    (
        "approved this attempt",
        {"approval_state": "approved", "approval_attempt": 1},
        ASKS,
        None,
        POLICY,
        Start(ASKS, 1),
    ),
    (
        "an approval is for one attempt",
        {"retry_count": 1, "approval_state": "approved", "approval_attempt": 1},
        ASKS,
        None,
        POLICY,
        AskApproval(ASKS, 2, NOW + 30 * M),
    ),
    (
        "awaiting a decision",
        {**AWAITING, "approval_deadline": NOW + M},
        ASKS,
        None,
        POLICY,
        Wait(NOW + M),
    ),
    (
        "nobody decided in time",
        {**AWAITING, "approval_deadline": NOW},
        ASKS,
        None,
        POLICY,
        Escalate(EscalationReason.APPROVAL_TIMEOUT, ASKS, timeout_note(NOW, 1)),
    ),
    (
        "approved while awaiting",
        {**AWAITING, "approval_state": "approved", "approval_deadline": NOW + M},
        ASKS,
        None,
        POLICY,
        Start(ASKS, 1),
    ),
    # Their order: each row has two rules that apply, the first one named wins.
    (
        "slot check before max retries",
        {"retry_count": 3},
        REFUSED,
        None,
        POLICY,
        Escalate(EscalationReason.REFUSED, REFUSED, SLOT_NOTE, Guard.SLOT),
    ),
    (
        "max retries before dry run",
        {"retry_count": 3},
        DRY,
        None,
        POLICY,
        Escalate(EscalationReason.MAX_RETRIES, DRY, guard=Guard.MAX_RETRIES),
    ),
    (
        "dry run before approval",
        {},
        ASKS_DRY,
        None,
        POLICY,
        Escalate(EscalationReason.DRY_RUN, ASKS_DRY, dry_note(ASKS_DRY, 1)),
    ),
    (
        "approval timeout before the slot check",
        {**AWAITING, "approval_deadline": NOW - M},
        dataclasses.replace(REFUSED, playbook=ASKS.playbook),
        None,
        POLICY,
        Escalate(
            EscalationReason.APPROVAL_TIMEOUT,
            dataclasses.replace(REFUSED, playbook=ASKS.playbook),
            timeout_note(NOW - M, 1),
        ),
    ),
    (
        "no playbook before anything",
        {**AWAITING, "approval_deadline": NOW - M, "retry_count": 9},
        None,
        None,
        Policy(dry_run=True),
        Escalate(EscalationReason.NO_PLAYBOOK, detail=NO_MATCH),
    ),
]


@pytest.mark.parametrize(
    ("fields", "p", "exhausted", "policy", "expected"),
    [row[1:] for row in ALONE],
    ids=[row[0] for row in ALONE],
)
def test_rules_without_the_store(
    fields: dict[str, Any],
    p: Plan | None,
    exhausted: EscalationReason | None,
    policy: Policy,
    expected: Decision,
) -> None:
    case = Case(
        incident(**fields),
        p,
        exhausted or EscalationReason.MAX_RETRIES,
        NO_MATCH if p is None else None,
    )
    assert one(case, policy) == expected


# --- the store rules: one action per target, cooldown, budget ---------------------------

COOL = plan(cooldown_minutes=10)
OTHER = 99


def busy(p: Plan) -> Defer:
    return Defer(
        p, Guard.TARGET_BUSY, f"another incident is acting on {p.target}", NOW + BUSY_RETRY
    )


def cooling(p: Plan, since: datetime, recurred: bool) -> Decision:
    free_at = since + timedelta(minutes=p.playbook.cooldown_minutes)
    output = f"{p.target} in cooldown for {p.playbook.name!r} until {free_at.isoformat()}"
    if recurred:
        note = Note(HealResult.SKIPPED, LogReason.COOLDOWN, output + ": the fault recurred")
        return Escalate(EscalationReason.RECURRED, p, note, Guard.COOLDOWN)
    return Defer(p, Guard.COOLDOWN, output, free_at)


STORE = [
    # (id, incident fields, plan, facts, expected)
    ("free target", {}, P, Facts(NOW), Start(P, 1)),
    ("target locked by another", {}, P, Facts(NOW, locks={"web": Held(OTHER, NOW + M)}), busy(P)),
    (
        "lock expired (its holder died)",
        {},
        P,
        Facts(NOW, locks={"web": Held(OTHER, NOW)}),
        Start(P, 1),
    ),
    (
        "its own lock (retry after a crash)",
        {},
        P,
        Facts(NOW, locks={"web": Held(1, NOW + M)}),
        Start(P, 1),
    ),
    (
        "an action on nothing needs no lock",
        {},
        plan(exclusive=False),
        Facts(NOW, locks={"web": Held(OTHER, NOW + M)}),
        Start(plan(exclusive=False), 1),
    ),
    (
        "cooldown: the same outage seen twice waits it out",
        {"created_at": NOW - 10 * M},
        COOL,
        Facts(NOW, cooldowns={(1, "web"): Held(OTHER, NOW - 5 * M)}),
        cooling(COOL, NOW - 5 * M, recurred=False),
    ),
    (
        "cooldown: a fault back after the repair is escalated",
        {"created_at": NOW - 4 * M},
        COOL,
        Facts(NOW, cooldowns={(1, "web"): Held(OTHER, NOW - 5 * M)}),
        cooling(COOL, NOW - 5 * M, recurred=True),
    ),
    (
        "cooldown over",
        {},
        COOL,
        Facts(NOW, cooldowns={(1, "web"): Held(OTHER, NOW - 10 * M)}),
        Start(COOL, 1),
    ),
    (
        "its own cooldown (max retries bounds it)",
        {"retry_count": 1},
        COOL,
        Facts(NOW, cooldowns={(1, "web"): Held(1, NOW - M)}),
        Start(COOL, 2),
    ),
    (
        "cooldown is per playbook",
        {},
        COOL,
        Facts(NOW, cooldowns={(2, "web"): Held(OTHER, NOW - M)}),
        Start(COOL, 1),
    ),
    (
        "the target lock before the cooldown",
        {},
        COOL,
        Facts(
            NOW,
            locks={"web": Held(OTHER, NOW + M)},
            cooldowns={(1, "web"): Held(OTHER, NOW - M)},
        ),
        busy(COOL),
    ),
    ("budget left", {}, P, Facts(NOW, budget_used=4), Start(P, 1)),
    (
        "budget spent",
        {},
        P,
        Facts(NOW, budget_used=5),
        Escalate(
            EscalationReason.BUDGET,
            P,
            Note(
                HealResult.SKIPPED,
                LogReason.BUDGET,
                "action budget spent: 5 per 60s; would run restart web",
            ),
            Guard.BUDGET,
        ),
    ),
    (
        "a refusal that needs no store spends no budget",
        {"retry_count": 3},
        P,
        Facts(NOW, budget_used=5),
        Escalate(EscalationReason.MAX_RETRIES, P, guard=Guard.MAX_RETRIES),
    ),
]


@pytest.mark.parametrize(
    ("fields", "p", "facts", "expected"),
    [row[1:] for row in STORE],
    ids=[row[0] for row in STORE],
)
def test_rules_that_read_the_store(
    fields: dict[str, Any], p: Plan, facts: Facts, expected: Decision
) -> None:
    assert one(Case(incident(**fields), p), Policy(budget=5), facts) == expected


def budget_spent(p: Plan, budget: int) -> Escalate:
    output = f"action budget spent: {budget} per 60s; would run {p.action_detail}"
    note = Note(HealResult.SKIPPED, LogReason.BUDGET, output)
    return Escalate(EscalationReason.BUDGET, p, note, Guard.BUDGET)


def test_one_action_per_target_within_a_batch() -> None:
    a, b = plan("web"), plan("db")
    cases = [Case(incident(id=n), p) for n, p in enumerate([a, a, b, a], 1)]
    assert decide(cases, POLICY, Facts(NOW)) == [Start(a, 1), busy(a), Start(b, 1), busy(a)]


def test_a_cooldown_started_in_the_batch_holds_the_next_of_its_pair() -> None:
    # Actions on nothing (no lock), so the cooldown is what holds the second one back.
    p = plan("", exclusive=False, cooldown_minutes=10)
    cases = [Case(incident(id=1), p), Case(incident(id=2, created_at=NOW - M), p)]
    assert decide(cases, POLICY, Facts(NOW)) == [Start(p, 1), cooling(p, NOW, recurred=False)]


def test_budget_units_go_in_order_and_pass_on_when_held_back() -> None:
    a, b, c, d = plan("a"), plan("b"), plan("c"), plan("d")
    cases = [
        Case(incident(id=1), a),
        Case(incident(id=2), b),  # locked by another: its unit goes to the next refused
        Case(incident(id=3), c),
        Case(incident(id=4), d),
    ]
    facts = Facts(NOW, budget_used=1, locks={"b": Held(OTHER, NOW + M)})
    assert decide(cases, Policy(budget=3), facts) == [
        Start(a, 1),
        busy(b),
        Start(c, 1),
        budget_spent(d, 3),
    ]


def test_refused_before_the_store_keeps_the_batch_in_order() -> None:
    cases = [
        Case(incident(id=1), None, no_match=NO_MATCH),
        Case(incident(id=2), plan("x")),
        Case(incident(id=3, retry_count=3), plan("y")),
        Case(incident(id=4), plan("x")),
    ]
    assert decide(cases, Policy(budget=1), Facts(NOW)) == [
        Escalate(EscalationReason.NO_PLAYBOOK, detail=NO_MATCH),
        Start(plan("x"), 1),
        Escalate(EscalationReason.MAX_RETRIES, plan("y"), guard=Guard.MAX_RETRIES),
        budget_spent(plan("x"), 1),
    ]


# --- after the action -------------------------------------------------------------------

AFTER = [
    # (id, plan, attempt, ok, retryable, escalate, verify_after, expected)
    (
        "success: verify over the playbook's window",
        P,
        1,
        True,
        True,
        None,
        None,
        Verify(NOW + 60 * S),
    ),
    ("the action knows its window", P, 1, True, True, None, 5.0, Verify(NOW + 5 * S)),
    (
        "the default window",
        plan(verify_seconds=None),
        1,
        True,
        True,
        None,
        None,
        Verify(NOW + 120 * S),
    ),
    (
        "alert only hands over",
        P,
        1,
        True,
        True,
        EscalationReason.ALERT_ONLY,
        None,
        Escalate(EscalationReason.ALERT_ONLY),
    ),
    ("failed: try again after the back-off", P, 1, False, True, None, None, Retry(NOW + 30 * S)),
    (
        "failed, not retryable",
        P,
        1,
        False,
        False,
        None,
        None,
        Escalate(EscalationReason.NOT_RETRYABLE),
    ),
    (
        "failed, the last attempt",
        P,
        3,
        False,
        True,
        None,
        None,
        Escalate(EscalationReason.MAX_RETRIES, guard=Guard.MAX_RETRIES),
    ),
]


@pytest.mark.parametrize(
    ("p", "attempt", "ok", "retryable", "escalate", "verify_after", "expected"),
    [row[1:] for row in AFTER],
    ids=[row[0] for row in AFTER],
)
def test_after_the_action(
    p: Plan,
    attempt: int,
    ok: bool,
    retryable: bool,
    escalate: EscalationReason | None,
    verify_after: float | None,
    expected: Any,
) -> None:
    got = after_action(p, attempt, ok, retryable, escalate, verify_after, POLICY, Facts(NOW))
    assert got == expected


def test_a_claimed_row_that_was_healing_is_open_again() -> None:
    row = {
        "id": 7,
        "source": SCHED,
        "status": IncidentStatus.HEALING.value,
        "retry_count": 1,
        "created_at": NOW,
        "last_seen_at": NOW,
        "last_action_at": NOW,
        "verify_deadline": None,
        "playbook_id": 1,
        "approval_state": None,
        "approval_attempt": None,
        "approval_deadline": None,
        "occurrences": 1,
        "fingerprint": None,
    }
    assert Incident.of(row).status is IncidentStatus.OPEN
    assert one(Case(Incident.of(row), P)) == Start(P, 2)


# --- pause (Stage 8, brake 1) -----------------------------------------------------------

ANA = Paused("deploy of db", "ana (api)", NOW - M)


def paused_output(p: Plan, until: datetime | None = None) -> str:
    ends = f" until {until.isoformat()}" if until else ""
    return f"paused by ana (api){ends}: deploy of db; would run {p.action_detail}"


PAUSE = [
    # (id, incident fields, plan, paused, expected)
    ("nothing starts", {}, P, ANA, Defer(P, Guard.PAUSED, paused_output(P), NOW + PAUSE_RECHECK)),
    (
        "a pause with an end: look again then",
        {},
        P,
        dataclasses.replace(ANA, until=NOW + 5 * M),
        Defer(P, Guard.PAUSED, paused_output(P, NOW + 5 * M), NOW + 5 * M),
    ),
    (
        "what runs nothing goes on: retries used",
        {"retry_count": 3},
        P,
        ANA,
        Escalate(EscalationReason.MAX_RETRIES, P, guard=Guard.MAX_RETRIES),
    ),
    (
        "what runs nothing goes on: asking a person",
        {},
        ASKS,
        ANA,
        AskApproval(ASKS, 1, NOW + 30 * M),
    ),
    (
        "a pause wins over the store rules (no budget, no lock taken)",
        {},
        P,
        ANA,
        Defer(P, Guard.PAUSED, paused_output(P), NOW + PAUSE_RECHECK),
    ),
]


@pytest.mark.parametrize(
    ("fields", "p", "paused", "expected"),
    [row[1:] for row in PAUSE],
    ids=[row[0] for row in PAUSE],
)
def test_a_pause(fields: dict[str, Any], p: Plan, paused: Paused, expected: Decision) -> None:
    facts = Facts(NOW, budget_used=5, locks={"web": Held(OTHER, NOW + M)}, paused=paused)
    assert one(Case(incident(**fields), p), Policy(budget=5), facts) == expected


# --- maintenance windows (Stage 8, brake 2) ---------------------------------------------

# NOW is Friday 2026-12-04 12:00 UTC.
LUNCH = {"times": [{"start_time": "11:30", "end_time": "13:00"}]}
WEEKEND = {"weekdays": ["saturday", "sunday"]}
WINDOWS = build_windows(
    [
        TimeIntervalModel.model_validate({"name": "lunch", "time_intervals": [LUNCH]}),
        TimeIntervalModel.model_validate({"name": "weekend", "time_intervals": [WEEKEND]}),
    ],
    [],
    [],
)


def brakes(**fields: Any) -> Brakes:
    return Brakes(**fields)


MUTED = plan(brakes=brakes(mute_time_intervals=("lunch",)))
MUTED_ESCALATES = plan(brakes=brakes(mute_time_intervals=("lunch",), escalate_in_maintenance=True))
WEEKENDS_ONLY = plan(brakes=brakes(active_time_intervals=("weekend",)))
MUTED_ASKS = plan(brakes=brakes(mute_time_intervals=("lunch",)), approval_required=True)
MUTED_DRY = plan(brakes=brakes(mute_time_intervals=("lunch",)), dry_run=True)
LUNCH_ENDS = datetime(2026, 12, 4, 13, 0, tzinfo=UTC)
SATURDAY = datetime(2026, 12, 5, tzinfo=UTC)


def held_for_lunch(p: Plan) -> Defer:
    output = f"in mute time interval 'lunch' (until {LUNCH_ENDS.isoformat()}); would run "
    return Defer(p, Guard.MAINTENANCE, output + p.action_detail, LUNCH_ENDS)


MAINTENANCE = [
    # (id, policy, plan, expected)
    (
        "a playbook's mute window: wait for its end",
        Policy(windows=WINDOWS),
        MUTED,
        held_for_lunch(MUTED),
    ),
    (
        "or escalate, if the playbook says so",
        Policy(windows=WINDOWS),
        MUTED_ESCALATES,
        Escalate(
            EscalationReason.MAINTENANCE,
            MUTED_ESCALATES,
            Note(
                HealResult.SKIPPED,
                LogReason.MAINTENANCE,
                "in mute time interval 'lunch'; would run restart web",
                1,
            ),
            Guard.MAINTENANCE,
        ),
    ),
    (
        "outside the playbook's active window: wait for it to open",
        Policy(windows=WINDOWS),
        WEEKENDS_ONLY,
        Defer(
            WEEKENDS_ONLY,
            Guard.MAINTENANCE,
            f"outside active time intervals 'weekend' (until {SATURDAY.isoformat()}); "
            "would run restart web",
            SATURDAY,
        ),
    ),
    (
        "a global mute window holds every playbook",
        Policy(windows=dataclasses.replace(WINDOWS, mute=("lunch",))),
        P,
        held_for_lunch(P),
    ),
    (
        "nobody is asked to approve what may not run yet",
        Policy(windows=WINDOWS),
        MUTED_ASKS,
        held_for_lunch(MUTED_ASKS),
    ),
    (
        "a dry run still says what it would do",
        Policy(windows=WINDOWS),
        MUTED_DRY,
        Escalate(
            EscalationReason.DRY_RUN,
            MUTED_DRY,
            Note(HealResult.DRY_RUN, LogReason.DRY_RUN, "dry run: would run restart web", 1),
        ),
    ),
    ("no window contains now: it starts", Policy(windows=WINDOWS), WEEKENDS_ONLY, None),
]


@pytest.mark.parametrize(
    ("policy", "p", "expected"),
    [row[1:] for row in MAINTENANCE],
    ids=[row[0] for row in MAINTENANCE],
)
def test_a_maintenance_window(policy: Policy, p: Plan, expected: Decision | None) -> None:
    at = NOW if expected is not None else SATURDAY + timedelta(hours=12)
    d = one(Case(incident(), p), policy, Facts(at))
    assert d == (expected if expected is not None else Start(p, 1))


def test_a_window_holds_before_the_store_rules_take_anything() -> None:
    facts = Facts(NOW, budget_used=0, locks={"web": Held(OTHER, NOW + M)})
    d = one(Case(incident(), MUTED), Policy(budget=1, windows=WINDOWS), facts)
    assert isinstance(d, Defer) and d.guard is Guard.MAINTENANCE


# --- quarantine (Stage 8, brake 5) ------------------------------------------------------

LATCH = Policy(quarantine_after=2, quarantine_window=timedelta(hours=1))
DB1 = plan("db1")


def recent(*minutes_ago: int) -> dict[str, tuple[datetime, ...]]:
    return {"db1": tuple(NOW - m * M for m in minutes_ago)}


def test_two_actions_in_the_window_are_the_limit() -> None:
    assert one(Case(incident(), DB1), LATCH, Facts(NOW, recent=recent(5))) == Start(DB1, 1)
    d = one(Case(incident(), DB1), LATCH, Facts(NOW, recent=recent(5, 30)))
    assert isinstance(d, Escalate)
    assert (d.reason, d.guard, d.announce) == (
        EscalationReason.QUARANTINED,
        Guard.QUARANTINE,
        True,
    )
    assert d.quarantine == "2 actions on it in the last 60 min; playbook 'restart' allows 2"
    assert d.note is not None and d.note.reason is LogReason.QUARANTINED


def test_actions_older_than_the_window_do_not_count() -> None:
    d = one(Case(incident(), DB1), LATCH, Facts(NOW, recent=recent(5, 61, 90)))
    assert d == Start(DB1, 1)


def test_a_quarantined_target_escalates_quietly() -> None:
    held = Quarantined("db1", NOW - M, "3 actions on it")
    d = one(Case(incident(), DB1), Policy(), Facts(NOW, quarantined={"db1": held}))
    assert isinstance(d, Escalate) and d.quarantine is None and d.announce is False
    assert d.note is not None and "db1 is quarantined (3 actions on it)" in d.note.output


def test_a_playbook_sets_its_own_limit_and_zero_is_off() -> None:
    tight = plan("db1", brakes=Brakes(quarantine_after=1, quarantine_window_minutes=10))
    assert isinstance(
        one(Case(incident(), tight), Policy(), Facts(NOW, recent=recent(5))), Escalate
    )
    assert one(Case(incident(), tight), Policy(), Facts(NOW, recent=recent(11))) == Start(tight, 1)
    off = plan("db1", brakes=Brakes(quarantine_after=0))
    assert one(Case(incident(), off), LATCH, Facts(NOW, recent=recent(1, 2, 3))) == Start(off, 1)


def test_the_batch_that_trips_it_holds_its_later_incidents_and_spends_no_budget() -> None:
    cases = [Case(incident(id=1), DB1), Case(incident(id=2), DB1), Case(incident(id=3), P)]
    facts = Facts(NOW, recent=recent(1, 2))
    policy = dataclasses.replace(LATCH, budget=1)
    first, second, third = decide(cases, policy, facts)
    assert isinstance(first, Escalate) and first.quarantine is not None and first.announce
    assert isinstance(second, Escalate) and second.quarantine is None and not second.announce
    assert third == Start(P, 1)  # the budget's one unit went to the other target


def test_actions_on_nothing_are_never_quarantined() -> None:
    nothing = plan("", exclusive=False)
    assert one(Case(incident(), nothing), LATCH, Facts(NOW, recent={"": (NOW,) * 5})) == Start(
        nothing, 1
    )


# --- thresholds (Stage 8, brake 7) ------------------------------------------------------

BURST = plan(brakes=Brakes(min_occurrences=3, occurrence_window_minutes=10))
FIRST_SEEN = NOW - 4 * M
WINDOW_ENDS = FIRST_SEEN + 10 * M


def burst_output(seen: int) -> str:
    return (
        f"{seen} of 3 occurrences within 10 min; waiting until {WINDOW_ENDS.isoformat()} "
        "for the rest; would run restart web"
    )


THRESHOLD = [
    # (id, incident fields, facts, expected)
    (
        "a lone report waits for the rest, or for the window's end",
        {"source": SCHED, "occurrences": 1},
        Facts(NOW),
        Defer(BURST, Guard.THRESHOLD, burst_output(1), WINDOW_ENDS, wake_at=3),
    ),
    ("a burst acts", {"source": SCHED, "occurrences": 3}, Facts(NOW), Start(BURST, 1)),
    (
        "short of it when the window ends: resolved, nothing run",
        {"source": SCHED, "occurrences": 2},
        Facts(WINDOW_ENDS),
        Resolve(ResolveKind.BELOW_THRESHOLD),
    ),
    (
        "an alert counts its firings (incidents of its fingerprint)",
        {"fingerprint": "abc"},
        Facts(NOW, firings={"abc": 2}),
        Defer(BURST, Guard.THRESHOLD, burst_output(2), WINDOW_ENDS, wake_at=3),
    ),
    (
        "an alert that fired often enough acts",
        {"fingerprint": "abc"},
        Facts(NOW, firings={"abc": 3}),
        Start(BURST, 1),
    ),
    (
        "only the first attempt waits: a retry goes on",
        {"source": SCHED, "occurrences": 1, "retry_count": 1},
        Facts(NOW),
        Start(BURST, 2),
    ),
]


@pytest.mark.parametrize(
    ("fields", "facts", "expected"),
    [row[1:] for row in THRESHOLD],
    ids=[row[0] for row in THRESHOLD],
)
def test_a_threshold(fields: dict[str, Any], facts: Facts, expected: Decision) -> None:
    case = Case(incident(created_at=FIRST_SEEN, **fields), BURST)
    assert one(case, POLICY, facts) == expected


# --- blocking alerts and the re-check (Stage 8, brakes 3 and 4) -------------------------

DEPLOY = (parse_matcher('alertname=~"Deploy.*"'),)
KEY = 'alertname=~"Deploy.*"'
BLOCKING = Policy(blocked_by=DEPLOY, blocked_recheck=30 * S)
FIRING = Facts(NOW, blocking={KEY: (("f1", "DeployInProgress"),)})


def test_a_blocking_alert_holds_the_action_until_it_stops() -> None:
    d = one(Case(incident(), P), BLOCKING, FIRING)
    assert d == Defer(
        P,
        Guard.BLOCKED,
        f"blocked by firing DeployInProgress ({KEY}); would run restart web",
        NOW + 30 * S,
    )
    quiet = Facts(NOW, blocking={KEY: ()})
    assert one(Case(incident(), P), BLOCKING, quiet) == Start(P, 1)


def test_blocked_for_too_long_escalates() -> None:
    old = incident(created_at=NOW - 31 * M)
    d = one(Case(old, P), BLOCKING, FIRING)
    assert isinstance(d, Escalate) and d.reason is EscalationReason.BLOCKED
    assert d.guard is Guard.BLOCKED
    patient = plan(brakes=Brakes(blocked_escalate_after_minutes=60))
    assert isinstance(one(Case(old, patient), BLOCKING, FIRING), Defer)


def test_alertmanager_unreachable_fails_closed_unless_told_otherwise() -> None:
    unknown = Facts(NOW, blocking={KEY: None})
    d = one(Case(incident(), P), BLOCKING, unknown)
    assert isinstance(d, Defer) and "could not be asked" in d.output
    open_ = dataclasses.replace(BLOCKING, blocked_fail_open=True)
    assert one(Case(incident(), P), open_, unknown) == Start(P, 1)


def test_a_playbook_blocks_on_its_own_alerts_and_not_on_its_own_fault() -> None:
    own = plan(brakes=Brakes(blocked_by=DEPLOY))
    assert isinstance(one(Case(incident(), own), POLICY, FIRING), Defer)
    assert one(Case(incident(), P), POLICY, FIRING) == Start(P, 1)  # not its matchers
    itself = incident(fingerprint="f1")  # the firing alert is this incident's own
    assert one(Case(itself, own), POLICY, FIRING) == Start(own, 1)


def test_a_waited_alert_is_rechecked_before_acting() -> None:
    gone = one(Case(incident(), P), POLICY, Facts(NOW, alerts={1: None}))
    assert isinstance(gone, Resolve) and gone.how is ResolveKind.ALERT_GONE
    assert gone.note is not None and gone.note.reason is LogReason.ALERT_GONE
    silence = AlertState("f1", "suppressed", {}, silenced_by=("s-1",))
    silenced = one(Case(incident(), P), POLICY, Facts(NOW, alerts={1: silence}))
    assert isinstance(silenced, Resolve) and silenced.how is ResolveKind.SILENCED
    assert silenced.note is not None and "(s-1)" in silenced.note.output
    # Still active, or only inhibited: it goes on; not asked: as before.
    for state in (AlertState("f1", "active", {}), AlertState("f1", "suppressed", {}, (), ("x",))):
        assert one(Case(incident(), P), POLICY, Facts(NOW, alerts={1: state})) == Start(P, 1)
    assert one(Case(incident(), P), POLICY, Facts(NOW, alerts={2: None})) == Start(P, 1)


# --- blast radius (Stage 8, brake 6) ----------------------------------------------------


def fleet(target: str) -> Plan:
    return plan(target, brakes=Brakes(max_concurrent_targets=2))


def test_a_playbook_acts_on_at_most_its_blast_radius_of_targets() -> None:
    cases = [Case(incident(id=i), fleet(t)) for i, t in enumerate(["a", "b", "c", "d"], 1)]
    a, b, c, d = decide(cases, POLICY, AT_NOW)
    assert (a, b) == (Start(fleet("a"), 1), Start(fleet("b"), 1))
    for extra in (c, d):
        assert isinstance(extra, Escalate) and extra.reason is EscalationReason.BLAST_RADIUS
        assert extra.guard is Guard.BLAST_RADIUS and extra.note is not None
    assert (
        isinstance(c, Escalate)
        and c.announce
        and "not acting on c" in (c.note.output if c.note else "")
    )
    assert isinstance(d, Escalate) and not d.announce  # one notice per playbook and batch


def test_targets_already_engaged_count_and_may_act_again() -> None:
    facts = Facts(NOW, engaged={1: frozenset({"a", "b"})})
    again, new = decide(
        [Case(incident(id=1), fleet("a")), Case(incident(id=2), fleet("c"))], POLICY, facts
    )
    assert again == Start(fleet("a"), 1)  # a target already counted is no extra one
    assert isinstance(new, Escalate) and new.reason is EscalationReason.BLAST_RADIUS


def test_no_blast_radius_no_limit() -> None:
    cases = [Case(incident(id=i), plan(t)) for i, t in enumerate("abcde", 1)]
    assert all(isinstance(d, Start) for d in decide(cases, POLICY, AT_NOW))
