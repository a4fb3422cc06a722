"""Stage 8, brake 7: thresholds. A playbook with min_occurrences acts only once the same
fault occurred that often within its window: a scheduler's reports of one task and
signature (ingest wakes the waiting incident on the one that reaches the count), an
alert's firings. Short of it when the window ends: resolved below_threshold, nothing run.
On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.conftest import oom_alert, restart_playbook

pytestmark = pytest.mark.usefixtures("scripted")


def burst(window: float = 10) -> str:
    return restart_playbook(
        error_type="DNS_FAIL", min_occurrences=3, occurrence_window_minutes=window
    )


async def test_a_burst_of_reports_acts_on_the_one_that_reaches_the_count(
    make_service: Any, playbooks_dir: Any, make_exception: Any, scripted: list[Any]
) -> None:
    svc = await make_service(playbooks=playbooks_dir(burst()))
    report = make_exception(labels={"container": "momo-db"})
    await svc.post("/api/v1/exceptions", report)
    await svc.settle()
    incident = await svc.only_incident()
    assert scripted == [] and incident["status"] == "open"
    (log,) = incident["heal_logs"]
    assert (log["result"], log["reason"]) == ("skipped", "threshold")
    assert log["result_output"].startswith("1 of 3 occurrences within 10 min")
    assert svc.sample("autoheal_guard_refusals_total", {"guard": "threshold"}) == 1

    await svc.post("/api/v1/exceptions", report)
    await svc.settle()
    assert scripted == []  # 2 of 3: still waiting, and not woken (no second heal log)
    assert len((await svc.only_incident())["heal_logs"]) == 1

    await svc.post("/api/v1/exceptions", report)
    await svc.settle()  # the third wakes it at once, not at the window's end
    incident = await svc.only_incident()
    assert scripted == [(incident["id"], "momo-db")]
    assert incident["occurrences"] == 3


async def test_a_lone_report_is_resolved_when_its_window_ends(
    make_service: Any, playbooks_dir: Any, make_exception: Any, scripted: list[Any]
) -> None:
    svc = await make_service(playbooks=playbooks_dir(burst(window=0.01)))  # 0.6 s
    await svc.post("/api/v1/exceptions", make_exception(labels={"container": "momo-db"}))
    await svc.settle()
    await asyncio.sleep(0.7)
    await svc.settle()
    incident = await svc.only_incident()
    assert scripted == []
    assert (incident["status"], incident["healed"]) == ("resolved", False)
    how = {"how": "below_threshold"}
    assert svc.sample("autoheal_incidents_resolved_total", how) == 1


async def test_an_alert_counts_its_firings(
    make_service: Any, playbooks_dir: Any, make_alert: Any, scripted: list[Any]
) -> None:
    folder = playbooks_dir(
        restart_playbook(min_occurrences=2, occurrence_window_minutes=10, verify_seconds=60)
    )
    svc = await make_service(playbooks=folder)

    def firing(starts: str) -> Any:
        alert = oom_alert(make_alert, fp="flappy", container="web")
        alert["alerts"][0]["startsAt"] = starts
        return alert

    first = firing("2026-12-04T10:00:00Z")
    await svc.post("/api/v1/alerts", first)
    await svc.settle()
    assert scripted == []
    # It resolves, then fires again: a second firing of the same alert, a new incident.
    resolved = firing("2026-12-04T10:00:00Z")
    resolved["status"] = resolved["alerts"][0]["status"] = "resolved"
    resolved["alerts"][0]["endsAt"] = "2026-12-04T10:01:00Z"
    await svc.post("/api/v1/alerts", resolved)
    await svc.post("/api/v1/alerts", firing("2026-12-04T10:02:00Z"))
    await svc.settle()
    second = [i for i in await svc.incidents() if i["status"] != "resolved"]
    assert [(i, c) for i, c in scripted] == [(second[0]["id"], "web")]
