"""The http action against a real local HTTP server (a stand-in job runner)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web


@pytest.fixture
async def runner(aiohttp_server: Any) -> Any:
    """Records what it receives; answers with whatever status the test queues up."""
    state: dict[str, Any] = {"received": [], "statuses": []}

    async def handle(request: web.Request) -> web.Response:
        state["received"].append(await request.json())
        status = state["statuses"].pop(0) if state["statuses"] else 202
        return web.json_response({"queued": True}, status=status)

    app = web.Application()
    app.router.add_post("/jobs/rerun", handle)
    server = await aiohttp_server(app)
    state["base"] = str(server.make_url("/jobs/"))
    return state


def playbook(url: str, **extra: Any) -> str:
    lines = [
        "playbooks:",
        "  - name: rerun job",
        "    error_type: CRAWLER_FAIL",
        "    cooldown_minutes: 0",
        "    verify_seconds: 60",
        f"    action: {{type: http, params: {{url: '{url}', body: {{task: '${{labels.task}}', reason: retry}}}}}}",
    ]
    lines += [f"    {k}: {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


REPORT = {
    "task": "crawl_shop",
    "message": "429 Client Error: Too Many Requests for url: https://shop",
}


async def test_calls_an_allow_listed_url_with_templated_body(
    runner: Any, make_service: Any, playbooks_dir: Any
) -> None:
    url = runner["base"] + "rerun"
    svc = await make_service(http_allow=[runner["base"]], playbooks=playbooks_dir(playbook(url)))
    await svc.post("/api/v1/exceptions", REPORT)
    await svc.settle()
    (log,) = (await svc.only_incident())["heal_logs"]
    assert log["result"] == "success", log
    assert log["action_detail"] == f"POST {url}"
    assert log["result_output"].startswith("HTTP 202")
    assert runner["received"] == [{"task": "crawl_shop", "reason": "retry"}]


async def test_5xx_is_retried_4xx_is_not(
    runner: Any, make_service: Any, playbooks_dir: Any
) -> None:
    url = runner["base"] + "rerun"
    runner["statuses"] = [503, 200]
    svc = await make_service(http_allow=[runner["base"]], playbooks=playbooks_dir(playbook(url)))
    await svc.post("/api/v1/exceptions", REPORT)
    await svc.settle()
    (log,) = (await svc.only_incident())["heal_logs"]
    assert log["result"] == "success"
    assert len(runner["received"]) == 2  # the 503, then the retry

    runner["received"].clear()
    runner["statuses"] = [409]
    await svc.post("/api/v1/success", {"task": "crawl_shop"})
    await svc.post("/api/v1/exceptions", REPORT)
    await svc.settle()
    newest = (await svc.incidents())[0]
    (log,) = (await svc.incident(newest["id"]))["heal_logs"]
    assert log["result"] == "failed"
    assert log["result_output"].startswith("HTTP 409")
    assert len(runner["received"]) == 1
    await asyncio.sleep(0)


async def test_url_outside_the_allow_list_fails_check(
    make_settings: Any, playbooks_dir: Any
) -> None:
    from receiver.catalog import load_files
    from receiver.errors import PlaybookError

    settings = make_settings(http_allow=["http://127.0.0.1:9/jobs/"])
    with pytest.raises(PlaybookError, match="allow-listed base URL"):
        load_files(playbooks_dir(playbook("http://evil.example/x")), settings.param_scope())


def test_target_names_what_the_call_acts_on() -> None:
    """Locks and cooldowns are per target: a named one (from a label), else the URL."""
    import pytest
    from pydantic import ValidationError

    from receiver.actions.http import HTTPCall, HTTPParams

    scope = {"http_allow": ("http://jobs.internal/",)}
    named = HTTPParams.model_validate(
        {"url": "http://jobs.internal/run", "target": "job-7"}, context=scope
    )
    assert HTTPCall().target(named) == "http:job-7"
    plain = HTTPParams.model_validate({"url": "http://jobs.internal/run"}, context=scope)
    assert HTTPCall().target(plain) == "http:http://jobs.internal/run"
    with pytest.raises(ValidationError):
        HTTPParams.model_validate(
            {"url": "http://jobs.internal/run", "target": "x; rm -rf /"}, context=scope
        )
