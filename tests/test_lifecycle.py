"""The heal worker through every guard and lifecycle edge, on both stores."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests import scripted_action
from tests.conftest import lifecycle_playbook as playbook
from tests.conftest import load_fixture
from tests.conftest import oom_alert as _oom_alert
from tests.scripted_action import WITH_SCRIPTED


def oom_alert(make_alert: Any, fp: str = "fp1", **labels: str) -> Any:
    return _oom_alert(make_alert, fp, **{"container": "box", **labels})


pytestmark = pytest.mark.usefixtures("scripted")


async def test_no_playbook_escalates(make_service: Any) -> None:
    svc = await make_service()
    await svc.post("/api/v1/alerts", load_fixture("firing.json"))
    await svc.settle()
    incident = await svc.only_incident()
    assert incident["status"] == "escalated"
    assert incident["escalation_reason"] == "no_playbook"
    assert incident["heal_logs"] == []
    assert svc.sample("autoheal_escalations_total", {"reason": "no_playbook"}) == 1


async def test_success_then_alert_resolves(
    make_service: Any, playbooks_dir: Any, make_alert: Any
) -> None:
    svc = await make_service(
        playbooks=playbooks_dir(
            playbook("scripted", "{container: '${labels.container}'}", verify_seconds=60)
        )
    )
    await svc.post("/api/v1/alerts", oom_alert(make_alert, container="momo-scheduler"))
    await svc.settle()
    incident = await svc.only_incident()
    assert incident["status"] == "verifying"
    (log,) = incident["heal_logs"]
    assert log["result"] == "success"
    assert log["action_detail"] == "scripted ok on momo-scheduler"
    assert log["result_output"] == "did it to momo-scheduler"
    assert log["action_type"] == "scripted"
    assert log["duration_ms"] >= 0
    assert incident["retry_count"] == 1
    resolved = oom_alert(make_alert, container="momo-scheduler")
    resolved["alerts"][0]["status"] = "resolved"
    await svc.post("/api/v1/alerts", resolved)
    incident = await svc.only_incident()
    assert incident["status"] == "resolved"
    pb = (await svc.get_json("/api/v1/playbooks"))["items"][0]
    assert (pb["success_count"], pb["fail_count"]) == (1, 0)
    assert (
        svc.sample(
            "autoheal_heal_attempts_total",
            {"playbook": "fix it", "action": "scripted", "result": "success"},
        )
        == 1
    )


async def test_alert_still_firing_after_verify_retries_then_escalates(
    make_service: Any, playbooks_dir: Any, make_alert: Any, scripted: Any
) -> None:
    svc = await make_service(
        playbooks=playbooks_dir(playbook("scripted", "{}", verify_seconds=0.1, max_retries=2))
    )
    await svc.post("/api/v1/alerts", oom_alert(make_alert))
    for _ in range(3):
        await svc.settle()
        await asyncio.sleep(0.15)
    await svc.settle()
    incident = await svc.only_incident()
    assert incident["status"] == "escalated"
    # Every action succeeded and none held: not healed, as opposed to actions that failed.
    assert incident["escalation_reason"] == "not_healed"
    assert [h["result"] for h in incident["heal_logs"]] == ["success", "success"]
    assert [h["attempt"] for h in incident["heal_logs"]] == [1, 2]
    assert len(scripted) == 2
    assert svc.sample("autoheal_verify_outcomes_total", {"outcome": "not_held"}) == 2
    assert svc.sample("autoheal_escalations_total", {"reason": "not_healed"}) == 1


async def test_failures_count_to_max_retries(
    make_service: Any, playbooks_dir: Any, make_alert: Any
) -> None:
    svc = await make_service(
        playbooks=playbooks_dir(playbook("scripted", "{outcome: fail}", max_retries=3))
    )
    await svc.post("/api/v1/alerts", oom_alert(make_alert))
    await svc.settle()
    incident = await svc.only_incident()
    assert incident["status"] == "escalated"
    assert incident["escalation_reason"] == "max_retries"
    assert [h["result"] for h in incident["heal_logs"]] == ["failed"] * 3
    assert incident["retry_count"] == 3
    pb = (await svc.get_json("/api/v1/playbooks"))["items"][0]
    assert pb["fail_count"] == 3


async def test_not_retryable_failure_escalates_at_once(
    make_service: Any, playbooks_dir: Any, make_alert: Any
) -> None:
    svc = await make_service(playbooks=playbooks_dir(playbook("scripted", "{outcome: fatal}")))
    await svc.post("/api/v1/alerts", oom_alert(make_alert))
    await svc.settle()
    incident = await svc.only_incident()
    assert incident["escalation_reason"] == "not_retryable"
    (log,) = incident["heal_logs"]
    assert log["reason"] == "not_retryable"


async def test_resend_during_verify_does_not_heal_twice(
    make_service: Any, playbooks_dir: Any, make_alert: Any, scripted: Any
) -> None:
    svc = await make_service(playbooks=playbooks_dir(playbook("scripted", "{}", verify_seconds=60)))
    for _ in range(3):
        await svc.post("/api/v1/alerts", oom_alert(make_alert))
        await svc.settle()
    incident = await svc.only_incident()
    assert incident["occurrences"] == 3
    assert len(incident["heal_logs"]) == 1
    assert len(scripted) == 1


async def test_cooldown_per_playbook_and_target(
    make_service: Any, playbooks_dir: Any, make_alert: Any, scripted: Any
) -> None:
    svc = await make_service(
        playbooks=playbooks_dir(
            playbook(
                "scripted",
                "{container: '${labels.container}'}",
                cooldown_minutes=30,
                verify_seconds=60,
            )
        )
    )
    await svc.post("/api/v1/alerts", oom_alert(make_alert, fp="a", container="box1"))
    await svc.settle()
    # A different alert on the same target within the cooldown, opened after the repair: the
    # fault came back (issue 16, item 9): skipped, recorded, and escalated at once.
    await svc.post("/api/v1/alerts", oom_alert(make_alert, fp="b", container="box1"))
    # Another target is not held back.
    await svc.post("/api/v1/alerts", oom_alert(make_alert, fp="c", container="box2"))
    await svc.settle()
    items = {i["fingerprint"]: i for i in await svc.incidents()}
    second = await svc.incident(items["b"]["id"])
    assert second["status"] == "escalated"
    assert second["escalation_reason"] == "recurred"
    (log,) = second["heal_logs"]
    assert log["result"] == "skipped" and log["reason"] == "cooldown"
    assert "box1" in log["result_output"] and "recurred" in log["result_output"]
    assert second["next_attempt_at"] is None
    assert (await svc.incident(items["c"]["id"]))["status"] == "verifying"
    assert sorted(c for _, c in scripted) == ["box1", "box2"]
    assert svc.sample("autoheal_guard_refusals_total", {"guard": "cooldown"}) == 1


async def test_dry_run_global(make_service: Any, make_exception: Any, scripted: Any) -> None:
    svc = await make_service(dry_run=True)
    await svc.post("/api/v1/exceptions", make_exception(labels={"container": "momo-db"}))
    await svc.settle()
    incident = await svc.only_incident()
    assert incident["status"] == "escalated"
    assert incident["escalation_reason"] == "dry_run"
    (log,) = incident["heal_logs"]
    assert log["result"] == "dry_run"
    assert "momo-db" in log["action_detail"]
    assert log["action_detail"].startswith("docker restart")


async def test_dry_run_per_playbook(
    make_service: Any, playbooks_dir: Any, make_alert: Any, scripted: Any
) -> None:
    svc = await make_service(playbooks=playbooks_dir(playbook("scripted", "{}", dry_run="true")))
    await svc.post("/api/v1/alerts", oom_alert(make_alert))
    await svc.settle()
    incident = await svc.only_incident()
    assert incident["heal_logs"][0]["result"] == "dry_run"
    assert scripted == []


async def test_alert_only_escalates_with_its_message(
    make_service: Any, make_exception: Any
) -> None:
    svc = await make_service()
    await svc.post(
        "/api/v1/exceptions",
        make_exception(
            task="sync_google_drive",
            message="google.auth.exceptions.RefreshError: ('invalid_grant: Token has been expired or revoked.')",
        ),
    )
    await svc.settle()
    incident = await svc.only_incident()
    assert incident["error_type"] == "AUTH_FAIL"
    assert incident["status"] == "escalated"
    assert incident["escalation_reason"] == "alert_only"
    (log,) = incident["heal_logs"]
    assert log["result"] == "success"
    assert "Google Drive OAuth token" in log["result_output"]


async def test_wait_retry_quiet_scheduler_resolves(
    make_service: Any, playbooks_dir: Any, make_exception: Any
) -> None:
    svc = await make_service(
        playbooks=playbooks_dir(
            playbook(
                "wait_retry", "{wait_minutes: 0.002}", error_type="CRAWLER_FAIL", severity_min="P3"
            )
        )
    )
    await svc.post(
        "/api/v1/exceptions",
        make_exception(message="429 Client Error: Too Many Requests for url: https://x"),
    )
    await svc.settle()
    assert (await svc.only_incident())["status"] == "verifying"
    await asyncio.sleep(0.2)
    await svc.settle()
    incident = await svc.only_incident()
    assert incident["status"] == "resolved"
    assert incident["heal_logs"][0]["action_detail"].startswith("wait 0.002 min")
    # The incident gave up its dedup key: the next failure opens a new incident.
    await svc.post(
        "/api/v1/exceptions",
        make_exception(message="429 Client Error: Too Many Requests for url: https://x"),
    )
    assert len(await svc.incidents()) == 2


async def test_wait_retry_recurring_counts_against_max_retries(
    make_service: Any, playbooks_dir: Any, make_exception: Any
) -> None:
    svc = await make_service(
        playbooks=playbooks_dir(
            playbook("wait_retry", "{wait_minutes: 5}", error_type="CRAWLER_FAIL", max_retries=2)
        )
    )
    body = make_exception(
        message="requests.exceptions.HTTPError: 429 Client Error: Too Many Requests"
    )
    await svc.post("/api/v1/exceptions", body)
    await svc.settle()
    for _ in range(2):
        # The job fails again while we wait: the wait did not help, look again now.
        await svc.post("/api/v1/exceptions", body)
        await svc.settle()
    incident = await svc.only_incident()
    assert incident["status"] == "escalated"
    assert incident["escalation_reason"] == "not_healed"
    assert [h["result"] for h in incident["heal_logs"]] == ["success", "success"]


async def test_success_ping_resolves_task(make_service: Any, make_exception: Any) -> None:
    svc = await make_service()
    await svc.post("/api/v1/exceptions", make_exception())
    resp = await svc.post("/api/v1/success", {"task": "run_auto_import_task"})
    assert resp.status == 200
    assert len((await resp.json())["resolved"]) == 1
    assert (await svc.only_incident())["status"] == "resolved"


async def test_resolve_while_healing(
    make_service: Any, playbooks_dir: Any, make_alert: Any
) -> None:
    svc = await make_service(playbooks=playbooks_dir(playbook("scripted", "{sleep: 0.5}")))
    await svc.post("/api/v1/alerts", oom_alert(make_alert))
    assert await svc.worker.poll_once() == 1
    for _ in range(50):
        if (await svc.only_incident())["status"] == "healing":
            break
        await asyncio.sleep(0.01)
    resolved = oom_alert(make_alert)
    resolved["alerts"][0]["status"] = "resolved"
    await svc.post("/api/v1/alerts", resolved)
    await svc.settle()
    incident = await svc.only_incident()
    assert incident["status"] == "resolved"
    (log,) = incident["heal_logs"]
    assert log["result"] == "success"  # the attempt still gets its record


async def test_refused_slot_is_recorded_and_escalated(
    make_service: Any, playbooks_dir: Any, make_alert: Any, scripted: Any
) -> None:
    svc = await make_service(
        playbooks=playbooks_dir(playbook("scripted", "{container: '${labels.container}'}"))
    )
    await svc.post("/api/v1/alerts", oom_alert(make_alert, container="momo-db; rm -rf /"))
    await svc.settle()
    incident = await svc.only_incident()
    assert incident["status"] == "escalated"
    assert incident["escalation_reason"] == "refused"
    (log,) = incident["heal_logs"]
    assert log["result"] == "refused"
    assert "container" in log["result_output"]
    assert scripted == []


async def test_restart_mid_incident_resumes(
    make_service: Any, playbooks_dir: Any, make_alert: Any, make_settings: Any, aiohttp_client: Any
) -> None:
    folder = playbooks_dir(playbook("scripted", "{sleep: 30}"))
    svc = await make_service(playbooks=folder, lease_seconds=0.5)
    await svc.post("/api/v1/alerts", oom_alert(make_alert))
    await svc.worker.poll_once()
    for _ in range(50):
        if (await svc.only_incident())["status"] == "healing":
            break
        await asyncio.sleep(0.01)
    await svc.client.close()  # the process stops mid-attempt

    (folder / "test.yaml").write_text(playbook("scripted", "{}", verify_seconds=60))
    from receiver.app import create_app
    from tests.conftest import Service

    again = Service(
        await aiohttp_client(
            create_app(make_settings(playbooks=folder, lease_seconds=0.5), actions=WITH_SCRIPTED)
        )
    )
    await asyncio.sleep(0.6)  # the dead attempt's lease runs out
    await again.settle()
    incident = await again.only_incident()
    assert incident["status"] == "verifying"
    assert [(h["result"], h["reason"]) for h in incident["heal_logs"]] == [
        ("failed", "interrupted"),
        ("success", None),
    ]
    assert incident["retry_count"] == 2


async def test_background_worker_heals_without_being_driven(
    make_service: Any, playbooks_dir: Any, make_alert: Any
) -> None:
    svc = await make_service(
        worker=True, playbooks=playbooks_dir(playbook("scripted", "{}", verify_seconds=60))
    )
    await svc.post("/api/v1/alerts", oom_alert(make_alert))
    for _ in range(100):
        if (await svc.only_incident())["status"] == "verifying":
            break
        await asyncio.sleep(0.02)
    assert (await svc.only_incident())["status"] == "verifying"


async def test_playbook_counts_survive_restart(
    make_service: Any, playbooks_dir: Any, make_alert: Any, make_settings: Any, aiohttp_client: Any
) -> None:
    folder = playbooks_dir(playbook("scripted", "{outcome: fail}", max_retries=2))
    svc = await make_service(playbooks=folder)
    await svc.post("/api/v1/alerts", oom_alert(make_alert))
    await svc.settle()
    await svc.client.close()
    from receiver.app import create_app
    from tests.conftest import Service

    again = Service(
        await aiohttp_client(create_app(make_settings(playbooks=folder), actions=WITH_SCRIPTED))
    )
    (pb,) = (await again.get_json("/api/v1/playbooks"))["items"]
    assert pb["fail_count"] == 2


async def test_one_action_at_a_time_per_target(
    make_service: Any, playbooks_dir: Any, make_alert: Any
) -> None:
    svc = await make_service(
        worker_concurrency=4,
        playbooks=playbooks_dir(
            playbook(
                "scripted", "{container: '${labels.container}', sleep: 0.4}", verify_seconds=60
            )
        ),
    )
    for fp in ("a", "b"):
        await svc.post("/api/v1/alerts", oom_alert(make_alert, fp=fp, container="same"))
    await svc.post("/api/v1/alerts", oom_alert(make_alert, fp="c", container="other"))
    assert await svc.worker.poll_once() == 3  # all three claimed at once
    for _ in range(100):
        await svc.settle()
        statuses = [i["status"] for i in await svc.incidents()]
        if statuses.count("verifying") == 3:
            break
        await asyncio.sleep(0.1)
    spans = sorted(scripted_action.SPANS, key=lambda s: s[2])
    same = [s for s in spans if s[1] == "same"]
    assert len(same) == 2
    assert same[0][3] <= same[1][2], "two actions ran on one target at once"
    other = next(s for s in spans if s[1] == "other")
    assert other[2] < same[0][3]  # another target was not held back
    logs = [h for i in await svc.incidents() for h in (await svc.incident(i["id"]))["heal_logs"]]
    busy = [h for h in logs if h["reason"] == "target_busy"]
    assert busy[0]["result"] == "skipped"
    assert busy[0]["result_output"] == "another incident is acting on container:same"
