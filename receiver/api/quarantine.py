"""Quarantined targets: which ones no automatic action touches (a restart loop tripped the
latch), and lifting one (a person decided it may be acted on again)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from receiver import appkeys, controls, openapi
from receiver.api.http import decided_by, json_response, problem
from receiver.db import repo
from receiver.domain import Quarantined
from receiver.openapi import documented
from receiver.payloads import DecisionReport

routes = web.RouteTableDef()


def quarantined_json(q: Quarantined, **extra: Any) -> dict[str, Any]:
    return {
        "target": q.target,
        "since": q.since.isoformat(),
        "reason": q.reason,
        "incident_id": q.incident_id,
        **extra,
    }


@routes.get("/api/v1/quarantine")
@documented(
    summary="Quarantined targets: no automatic action touches them until lifted",
    responses={200: openapi.QuarantineList, 503: openapi.Problem},
    tag="operations",
)
async def list_quarantine(request: web.Request) -> web.Response:
    async with request.app[appkeys.DATABASE].reading() as conn:
        held = await repo.quarantine.list_held(conn)
    return json_response({"targets": [quarantined_json(q) for q in held]})


@routes.delete(r"/api/v1/quarantine/{target:[\s\S]+}")  # any character: as stored
@documented(
    summary="Lift a target's quarantine: automatic actions may touch it again",
    body=DecisionReport,
    body_optional=True,
    responses={
        200: openapi.QuarantineLifted,
        400: openapi.Problem,
        404: openapi.Problem,
        503: openapi.Problem,
    },
    tag="operations",
)
async def lift_quarantine(request: web.Request) -> web.Response:
    """Its count of actions starts again now; incidents it escalated stay escalated."""
    target = request.match_info["target"]
    by = await decided_by(request)
    lifted = await controls.lift(request.app[appkeys.DATABASE], target, by, datetime.now(UTC))
    if lifted is None:
        raise problem(404, "not_found", f"{target} is not quarantined")
    return json_response(quarantined_json(lifted, lifted_by=by))
