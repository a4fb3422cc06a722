"""Pause and resume: a person stops every replica from starting actions (running ones
finish; incidents are still recorded and wait), and lets them go again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from receiver import appkeys, controls, openapi
from receiver.api.http import decided_by, json_response, parse
from receiver.db import repo
from receiver.domain import Paused
from receiver.notify import announcer
from receiver.openapi import documented
from receiver.payloads import DecisionReport, PauseRequest

routes = web.RouteTableDef()


def state(paused: Paused | None, **extra: Any) -> dict[str, Any]:
    if paused is None:
        return {"status": "running", **extra}
    return {
        "status": "paused",
        "reason": paused.reason,
        "by": paused.by,
        "since": paused.at.isoformat(),
        "until": paused.until.isoformat() if paused.until else None,
        **extra,
    }


@routes.get("/api/v1/pause")
@documented(
    summary="Whether autoheal is paused", responses={200: openapi.PauseState}, tag="operations"
)
async def get_pause(request: web.Request) -> web.Response:
    """Paused (who, why, since, until) or running."""
    async with request.app[appkeys.DATABASE].reading() as conn:
        paused = await repo.pause.read(conn, datetime.now(UTC))
    return json_response(state(paused))


@routes.post("/api/v1/pause")
@documented(
    summary="Pause: no action starts on any replica until resumed (or for_minutes)",
    body=PauseRequest,
    responses={200: openapi.PauseState, 400: openapi.Problem, 503: openapi.Problem},
    tag="operations",
)
async def post_pause(request: web.Request) -> web.Response:
    """Pause every replica; running actions finish, new incidents wait."""
    body = await parse(request, PauseRequest)
    now = datetime.now(UTC)
    until = now + timedelta(minutes=body.for_minutes) if body.for_minutes else None
    by = f"{body.by or 'api'} (api)"
    announce = announcer(request.app[appkeys.SETTINGS])
    paused = await controls.pause(
        request.app[appkeys.DATABASE], announce, body.reason, by, now, until
    )
    return json_response(state(paused))


@routes.delete("/api/v1/pause")
@documented(
    summary="Resume: actions start again; incidents the pause held back are due at once",
    body=DecisionReport,
    body_optional=True,
    responses={200: openapi.PauseState, 400: openapi.Problem, 503: openapi.Problem},
    tag="operations",
)
async def delete_pause(request: web.Request) -> web.Response:
    """End the pause (a no-op when none is in force)."""
    by = await decided_by(request)
    announce = announcer(request.app[appkeys.SETTINGS])
    _, woke = await controls.resume(request.app[appkeys.DATABASE], announce, by, datetime.now(UTC))
    if appkeys.WORKER in request.app:
        request.app[appkeys.WORKER].wake()
    return json_response(state(None, woke=woke))
