"""Stage 8, brake 1: pause. A person pauses autoheal through one replica; no action starts
on any replica (incidents are still recorded and wait, with a heal log saying who paused it
and why); resuming lets the incidents it held back run at once. On SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import oom_alert, restart_playbook

pytestmark = pytest.mark.usefixtures("scripted")


def restart() -> str:
    return restart_playbook(verify_seconds=60)


async def test_a_pause_holds_every_replica_until_resumed(
    make_service: Any, playbooks_dir: Any, make_alert: Any, scripted: list[Any]
) -> None:
    folder = playbooks_dir(restart())
    one = await make_service(playbooks=folder, replica_id="one")
    two = await make_service(playbooks=folder, replica_id="two")

    refused = await one.post("/api/v1/pause", {"reason": "deploy"}, token=None)
    assert refused.status == 401
    paused = await one.post("/api/v1/pause", {"reason": "deploy of db", "by": "ana"})
    assert paused.status == 200, await paused.text()
    assert (await paused.json())["status"] == "paused"
    state = await two.get_json("/api/v1/pause")  # the other replica reads the same store
    assert (state["status"], state["by"], state["reason"]) == (
        "paused",
        "ana (api)",
        "deploy of db",
    )

    await two.post("/api/v1/alerts", oom_alert(make_alert, container="db1"))
    await two.settle()
    await one.settle()
    incident = await two.only_incident()
    assert scripted == []  # nothing ran on either replica
    assert incident["status"] == "open"
    (log,) = incident["heal_logs"]
    assert (log["result"], log["reason"]) == ("skipped", "paused")
    assert "paused by ana (api): deploy of db" in log["result_output"]
    assert two.sample("autoheal_guard_refusals_total", {"guard": "paused"}) == 1
    scrape = await two.client.get("/metrics")
    assert "autoheal_paused 1.0" in await scrape.text()

    resumed = await one.client.delete(
        "/api/v1/pause", headers={"Authorization": f"Bearer {_token()}"}
    )
    assert resumed.status == 200, await resumed.text()
    assert (await resumed.json()) == {"status": "running", "woke": 1}
    await two.settle()
    await one.settle()
    assert scripted == [(incident["id"], "db1")]  # held back, then run once
    scrape = await two.client.get("/metrics")
    assert "autoheal_paused 0.0" in await scrape.text()


async def test_a_pause_for_a_while_ends_by_itself(
    make_service: Any, playbooks_dir: Any, make_alert: Any, scripted: list[Any]
) -> None:
    svc = await make_service(playbooks=playbooks_dir(restart()))
    answer = await svc.post("/api/v1/pause", {"reason": "short", "for_minutes": 0.02})
    body = await answer.json()
    assert body["status"] == "paused" and body["until"] is not None
    await svc.post("/api/v1/alerts", oom_alert(make_alert, container="web"))
    await svc.settle()
    incident = await svc.only_incident()
    assert scripted == []
    assert incident["heal_logs"][0]["reason"] == "paused"
    # The incident waits for the pause's end (1.2 s), not for the 15-minute recheck.
    await _until(lambda: svc.worker.drain(5), lambda: bool(scripted), within=10)
    assert scripted == [(incident["id"], "web")]
    assert (await svc.get_json("/api/v1/pause"))["status"] == "running"


async def test_a_pause_refuses_a_body_it_cannot_use(make_service: Any) -> None:
    svc = await make_service()
    for body in ({}, {"reason": ""}, {"reason": "x", "for_minutes": -1}, {"reason": "x", "y": 1}):
        answer = await svc.post("/api/v1/pause", body)
        assert answer.status in (400, 422), body
    assert (await svc.get_json("/api/v1/pause"))["status"] == "running"


def _token() -> str:
    from tests.conftest import TOKEN

    return TOKEN


async def _until(step: Any, done: Any, within: float) -> None:
    import asyncio
    import time

    deadline = time.monotonic() + within
    while not done():
        assert time.monotonic() < deadline, "condition not met in time"
        await step()
        await asyncio.sleep(0.1)


async def test_people_are_told_of_a_pause_and_of_the_resume(
    make_service: Any, aiohttp_server: Any
) -> None:
    from aiohttp import web

    bodies: list[Any] = []

    async def hook(request: web.Request) -> web.Response:
        bodies.append(await request.json())
        return web.Response(status=204)

    people = web.Application()
    people.router.add_post("/hook", hook)
    server = await aiohttp_server(people)
    svc = await make_service(notify_webhook_url=str(server.make_url("/hook")))
    await svc.post("/api/v1/pause", {"reason": "deploy of db", "by": "ana"})
    await svc.deliver()
    resumed = await svc.client.delete(
        "/api/v1/pause", json={"by": "bo"}, headers={"Authorization": f"Bearer {_token()}"}
    )
    assert resumed.status == 200
    await svc.deliver()
    assert [(b["event"], b["summary"]) for b in bodies] == [
        ("paused", "autoheal paused"),
        ("resumed", "autoheal resumed"),
    ]
    paused, resumed_notice = (b["notices"][0] for b in bodies)
    assert paused["message"].startswith("Paused by ana (api) until resumed: deploy of db.")
    assert paused["incident_id"] == 0
    assert resumed_notice["message"].startswith("Resumed by bo (api) (paused by ana (api)")
    assert "0 incident(s) it held back are due now" in resumed_notice["message"]
