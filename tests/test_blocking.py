"""Stage 8, brakes 3 and 4, against the real Alertmanager.

Blocking alerts: while an alert named by a playbook's blocked_by fires in Alertmanager, its
action waits (a heal log naming the alert); once the alert ends the action runs.
Alertmanager unreachable: the action waits (fail closed) unless the settings fail open.

The re-check: an alert's incident that waited (here: a pause) is not acted on when, asked
just before, Alertmanager no longer holds its alert active, or a person silenced it
through Alertmanager's API meanwhile: it is resolved with a heal log saying so.

The alerts reach autoheal as they do in production: posted to Alertmanager, which sends
them to autoheal's webhook. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import TOKEN, restart_playbook, until
from tests.realprograms import free_port, start_alertmanager, stop_process

pytestmark = [pytest.mark.usefixtures("scripted", "programs"), pytest.mark.timeout(90)]


def am_config(autoheal_url: str, group_by: str = "[alertname, container]", extra: str = "") -> str:
    # send_resolved false: only the re-check can learn that an alert ended.
    return f"""
route:
  receiver: autoheal
  group_by: {group_by}
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: autoheal
    webhook_configs:
      - url: {autoheal_url}
        send_resolved: false{extra}
        http_config:
          authorization: {{type: Bearer, credentials_file: "{{token_file}}"}}
"""


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


class AM:
    """A real Alertmanager in front of one autoheal service."""

    def __init__(self, url: str) -> None:
        self.url = url

    async def fire(self, ends_in: float = 600, **labels: str) -> None:
        now = datetime.now(UTC)
        alert = {
            "labels": labels,
            "annotations": {"summary": "test"},
            "startsAt": _iso(
                now - timedelta(seconds=5) if ends_in > 0 else now - timedelta(minutes=1)
            ),
            "endsAt": _iso(now + timedelta(seconds=ends_in)),
        }
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{self.url}/api/v2/alerts", json=[alert]) as resp,
        ):
            assert resp.status == 200, await resp.text()

    async def end(self, **labels: str) -> None:
        await self.fire(ends_in=-1, **labels)

    async def silence(self, **labels: str) -> str:
        now = datetime.now(UTC)
        body = {
            "matchers": [
                {"name": k, "value": v, "isRegex": False, "isEqual": True}
                for k, v in labels.items()
            ],
            "startsAt": _iso(now),
            "endsAt": _iso(now + timedelta(hours=1)),
            "createdBy": "ana",
            "comment": "looking at it",
        }
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{self.url}/api/v2/silences", json=body) as resp,
        ):
            assert resp.status == 200, await resp.text()
            silence_id: str = (await resp.json())["silenceID"]
            return silence_id

    async def active(self, alertname: str) -> list[Any]:
        async with (
            aiohttp.ClientSession() as http,
            http.get(
                f"{self.url}/api/v2/alerts",
                params={"filter": f'alertname="{alertname}"', "silenced": "false"},
            ) as resp,
        ):
            alerts: list[Any] = await resp.json()
            return [a for a in alerts if a["status"]["state"] == "active"]


@pytest.fixture
async def with_alertmanager(tmp_path: Path, make_service: Any) -> AsyncIterator[Any]:
    started: list[Any] = []

    async def make(am: dict[str, str] | None = None, **overrides: Any) -> tuple[Any, AM]:
        port = free_port()
        svc = await make_service(alertmanager_url=f"http://127.0.0.1:{port}", **overrides)
        hook = str(svc.client.make_url("/api/v1/alerts"))
        config = am_config(hook, **(am or {}))
        server = await asyncio.to_thread(
            start_alertmanager, tmp_path / f"am{port}", hook, TOKEN, config, port
        )
        started.append(server)
        return svc, AM(server.url)

    yield make
    for server in started:
        await asyncio.to_thread(stop_process, server.process)


async def _incident(svc: Any, alertname: str = "ContainerOOMKilled") -> dict[str, Any]:
    async def delivered() -> list[Any]:
        return [i for i in await svc.incidents() if i["task_name"] == alertname]

    (item,) = await until(delivered, 20, "Alertmanager delivered the alert")
    found: dict[str, Any] = await svc.incident(item["id"])
    return found


async def test_a_blocking_alert_holds_the_action_until_it_ends(
    with_alertmanager: Any, playbooks_dir: Any, scripted: list[Any]
) -> None:
    folder = playbooks_dir(restart_playbook(blocked_by="['alertname=~\"Deploy.*\"']"))
    svc, am = await with_alertmanager(playbooks=folder, blocked_recheck_seconds=0.2)
    await am.fire(alertname="DeployInProgress", service="db")
    await until(lambda: am.active("DeployInProgress"), 10, "deploy alert active")
    await am.fire(alertname="ContainerOOMKilled", container="db1")
    incident = await _incident(svc)
    await svc.settle()
    assert scripted == []
    log = (await svc.incident(incident["id"]))["heal_logs"][0]
    assert (log["result"], log["reason"]) == ("skipped", "blocked")
    assert "blocked by firing DeployInProgress" in log["result_output"]

    async def blocked_logs(rechecks: int) -> list[str]:
        for _ in range(rechecks):  # each a look at Alertmanager, 0.2 s apart
            await asyncio.sleep(0.25)
            await svc.settle()
        found = await svc.incident(incident["id"])
        return [g["result_output"] for g in found["heal_logs"] if g["reason"] == "blocked"]

    # Rechecked while the deploy goes on: the same hold is logged and counted once.
    assert len(await blocked_logs(4)) == 1
    assert svc.sample("autoheal_guard_refusals_total", {"guard": "blocked"}) == 1
    # Another blocking alert: what holds it changed, and that is said.
    await am.fire(alertname="DeployDatabase", service="db")
    await until(lambda: am.active("DeployDatabase"), 10, "second deploy alert active")
    # (the answer about blocking alerts is reused for 2 s: a few rechecks later)
    said = await until(lambda: _two(blocked_logs(2)), 10, "the new hold logged")
    assert len(said) == 2 and "DeployDatabase, DeployInProgress" in said[1], said
    assert svc.sample("autoheal_guard_refusals_total", {"guard": "blocked"}) == 2
    await am.end(alertname="DeployDatabase", service="db")
    await until(lambda: _none(am.active("DeployDatabase")), 10, "second deploy alert ended")

    await am.end(alertname="DeployInProgress", service="db")
    await until(lambda: _none(am.active("DeployInProgress")), 10, "deploy alert ended")

    async def acted() -> bool:
        await svc.settle()
        return bool(scripted)

    await until(acted, 10, "the action ran once the deploy ended")
    assert scripted == [(incident["id"], "db1")]


async def _none(pending: Any) -> bool:
    return not await pending


async def _two(pending: Any) -> Any:
    found = await pending
    return found if len(found) >= 2 else None


async def test_alertmanager_unreachable_fails_closed_or_open(
    make_service: Any, playbooks_dir: Any, make_alert: Any, scripted: list[Any]
) -> None:
    from tests.conftest import oom_alert

    folder = playbooks_dir(restart_playbook(blocked_by="['alertname=~\"Deploy.*\"']"))
    nowhere = f"http://127.0.0.1:{free_port()}"
    closed = await make_service(playbooks=folder, alertmanager_url=nowhere)
    await closed.post("/api/v1/alerts", oom_alert(make_alert, container="db1"))
    await closed.settle()
    assert scripted == []
    log = (await closed.only_incident())["heal_logs"][0]
    assert "Alertmanager could not be asked" in log["result_output"]

    opened = await make_service(playbooks=folder, alertmanager_url=nowhere, blocked_fail_open=True)
    await opened.post("/api/v1/alerts", oom_alert(make_alert, fp="other", container="web"))
    await opened.settle()
    assert [c for _, c in scripted] == ["web"]


@pytest.mark.parametrize("meanwhile", ["silenced", "ended"])
async def test_an_alert_that_waited_is_rechecked_before_acting(
    with_alertmanager: Any, playbooks_dir: Any, scripted: list[Any], meanwhile: str
) -> None:
    svc, am = await with_alertmanager(playbooks=playbooks_dir(restart_playbook()))
    assert (await svc.post("/api/v1/pause", {"reason": "deploy"})).status == 200
    await am.fire(alertname="ContainerOOMKilled", container="db1")
    incident = await _incident(svc)
    await svc.settle()  # held back by the pause: it waited
    assert scripted == []

    if meanwhile == "silenced":
        silence = await am.silence(alertname="ContainerOOMKilled", container="db1")
    else:
        await am.end(alertname="ContainerOOMKilled", container="db1")
    await until(lambda: _none(am.active("ContainerOOMKilled")), 10, "alert no longer active")
    resumed = await svc.client.delete("/api/v1/pause", headers={"Authorization": f"Bearer {TOKEN}"})
    assert resumed.status == 200
    await svc.settle()
    assert scripted == []  # nothing was run
    found = await svc.incident(incident["id"])
    assert found["status"] == "resolved" and found["healed"] is False
    log = found["heal_logs"][-1]
    if meanwhile == "silenced":
        assert (log["result"], log["reason"]) == ("skipped", "silenced")
        assert silence in log["result_output"]
        how = "silenced"
    else:
        assert (log["result"], log["reason"]) == ("skipped", "alert_gone")
        how = "alert_gone"
    assert svc.sample("autoheal_incidents_resolved_total", {"how": how}) == 1


async def test_verify_asks_alertmanager_rather_than_wait_for_the_resolve(
    with_alertmanager: Any, playbooks_dir: Any, make_alert: Any, scripted: list[Any]
) -> None:
    """A repair is judged held as soon as Alertmanager no longer holds the alert (here it
    never sends the resolve: send_resolved false, as for a silenced alert); an alert it
    never held (a webhook from elsewhere) waits for its resolve, as before."""
    from tests.conftest import oom_alert

    folder = playbooks_dir(restart_playbook(verify_seconds=600))
    svc, am = await with_alertmanager(playbooks=folder)
    await am.fire(alertname="ContainerOOMKilled", container="db1")
    incident = await _incident(svc)
    elsewhere = oom_alert(make_alert, fp="elsewhere", container="web")
    await svc.post("/api/v1/alerts", elsewhere)
    await svc.settle()
    assert sorted(c for _, c in scripted) == ["db1", "web"]
    await svc.worker.watch_verifying()  # both verifying; db1's alert seen in Alertmanager
    assert {i["status"] for i in await svc.incidents()} == {"verifying"}

    await am.end(alertname="ContainerOOMKilled", container="db1")
    await until(lambda: _none(am.active("ContainerOOMKilled")), 10, "alert cleared")
    await svc.worker.watch_verifying()
    found = await svc.incident(incident["id"])
    assert (found["status"], found["healed"]) == ("resolved", True)
    assert svc.sample("autoheal_incidents_resolved_total", {"how": "alert_cleared"}) == 1
    other = [i for i in await svc.incidents() if i["id"] != incident["id"]]
    assert [i["status"] for i in other] == ["verifying"]  # never seen there: still waits


async def test_a_silenced_alert_is_verified_by_asking_too(
    with_alertmanager: Any, playbooks_dir: Any, scripted: list[Any]
) -> None:
    """Alertmanager sends nothing for a silenced alert, not even its resolve. While it still
    fires (silenced) the fault is there: not cleared; once it ends, the watch resolves it."""
    folder = playbooks_dir(restart_playbook(verify_seconds=600))
    svc, am = await with_alertmanager(playbooks=folder)
    await am.fire(alertname="ContainerOOMKilled", container="db1")
    incident = await _incident(svc)
    await svc.settle()
    assert [c for _, c in scripted] == ["db1"]
    await svc.worker.watch_verifying()  # seen in Alertmanager
    await am.silence(alertname="ContainerOOMKilled", container="db1")
    await svc.worker.watch_verifying()
    assert (await svc.incident(incident["id"]))["status"] == "verifying"

    await am.end(alertname="ContainerOOMKilled", container="db1")

    async def resolved() -> bool:
        await svc.worker.watch_verifying()
        return bool((await svc.incident(incident["id"]))["status"] == "resolved")

    await until(resolved, 10, "the silenced alert's end seen by the watch")
    found = await svc.incident(incident["id"])
    assert found["healed"] is True
    assert svc.sample("autoheal_incidents_resolved_total", {"how": "alert_cleared"}) == 1


async def test_a_truncated_webhook_fetches_the_rest_of_its_group(
    with_alertmanager: Any, playbooks_dir: Any
) -> None:
    """Alertmanager's max_alerts cuts a group's webhook; autoheal asks its API for the rest
    (the group's labels as the filter) so no alert of the group is missed."""
    svc, am = await with_alertmanager(
        playbooks=playbooks_dir(restart_playbook()),
        am={"group_by": "[alertname]", "extra": "\n        max_alerts: 2"},
    )
    for i in range(5):
        await am.fire(alertname="ContainerOOMKilled", container=f"db{i}")

    async def all_five() -> list[Any]:
        found = [i for i in await svc.incidents() if i["task_name"] == "ContainerOOMKilled"]
        return found if len(found) == 5 else []

    found = await until(all_five, 20, "every alert of the group stored")
    assert sorted(i["labels"]["container"] for i in found) == [f"db{i}" for i in range(5)]
    fetched = svc.sample("autoheal_truncated_alerts_fetched_total", {"result": "fetched"})
    assert fetched >= 3  # at least the three the first webhook left out


async def test_a_truncated_group_without_group_labels_is_not_guessed(
    make_service: Any, make_alert: Any
) -> None:
    """No labels name the group (group_by: ['...']): asking for every active alert would
    take in other routes' alerts, so nothing is fetched, and that is counted."""
    from tests.conftest import oom_alert

    svc = await make_service(alertmanager_url=f"http://127.0.0.1:{free_port()}")
    payload = oom_alert(make_alert, container="db1")
    payload["truncatedAlerts"] = 3
    payload["groupLabels"] = {}
    answer = await svc.post("/api/v1/alerts", payload)
    assert answer.status == 200
    assert (await answer.json())["fetched"] == 0
    assert svc.sample("autoheal_truncated_alerts_fetched_total", {"result": "failed"}) == 3
