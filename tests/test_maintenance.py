"""Stage 8, brake 2: maintenance windows. A running service with the time intervals in its
settings: a playbook's mute window holds its action (a heal log, the guard counted, nothing
run), a playbook that says so escalates instead, and a global active window holds every
playbook outside it. The windows' arithmetic at fixed clocks is in test_timeintervals.py,
the rule's order in test_decide.py. On SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import oom_alert, restart_playbook

pytestmark = pytest.mark.usefixtures("scripted")

INTERVALS = [
    {
        "name": "always",
        "time_intervals": [{"times": [{"start_time": "00:00", "end_time": "24:00"}]}],
    },
    {"name": "long ago", "time_intervals": [{"years": ["1999"], "location": "Europe/Berlin"}]},
]


async def test_a_mute_window_holds_the_action(
    make_service: Any, playbooks_dir: Any, make_alert: Any, scripted: list[Any]
) -> None:
    folder = playbooks_dir(restart_playbook(mute_time_intervals="[always]"))
    svc = await make_service(playbooks=folder, time_intervals=INTERVALS)
    await svc.post("/api/v1/alerts", oom_alert(make_alert, container="db1"))
    await svc.settle()
    incident = await svc.only_incident()
    assert scripted == []
    assert incident["status"] == "open"
    (log,) = incident["heal_logs"]
    assert (log["result"], log["reason"]) == ("skipped", "maintenance")
    assert "in mute time interval 'always'" in log["result_output"]
    assert "no end within 31 days" in log["result_output"]
    assert svc.sample("autoheal_guard_refusals_total", {"guard": "maintenance"}) == 1
    await svc.settle()  # not due again: nothing more is written
    assert len((await svc.only_incident())["heal_logs"]) == 1


async def test_a_playbook_may_escalate_in_maintenance(
    make_service: Any, playbooks_dir: Any, make_alert: Any, scripted: list[Any]
) -> None:
    folder = playbooks_dir(
        restart_playbook(mute_time_intervals="[always]", in_maintenance="escalate")
    )
    svc = await make_service(playbooks=folder, time_intervals=INTERVALS)
    await svc.post("/api/v1/alerts", oom_alert(make_alert, container="db1"))
    await svc.settle()
    incident = await svc.only_incident()
    assert scripted == []
    assert (incident["status"], incident["escalation_reason"]) == ("escalated", "maintenance")
    assert incident["heal_logs"][0]["reason"] == "maintenance"
    labels = {"reason": "maintenance"}
    assert svc.sample("autoheal_escalations_total", labels) == 1


async def test_a_global_active_window_holds_every_playbook_outside_it(
    make_service: Any, playbooks_dir: Any, make_alert: Any, scripted: list[Any]
) -> None:
    folder = playbooks_dir(restart_playbook())
    svc = await make_service(
        playbooks=folder, time_intervals=INTERVALS, active_time_intervals=["long ago"]
    )
    await svc.post("/api/v1/alerts", oom_alert(make_alert, container="db1"))
    await svc.settle()
    incident = await svc.only_incident()
    assert scripted == []
    assert "outside active time intervals 'long ago'" in incident["heal_logs"][0]["result_output"]


async def test_no_window_holds_nothing(
    make_service: Any, playbooks_dir: Any, make_alert: Any, scripted: list[Any]
) -> None:
    # The interval exists but is not named by anything: the action runs.
    svc = await make_service(playbooks=playbooks_dir(restart_playbook()), time_intervals=INTERVALS)
    await svc.post("/api/v1/alerts", oom_alert(make_alert, container="db1"))
    await svc.settle()
    incident = await svc.only_incident()
    assert scripted == [(incident["id"], "db1")]
