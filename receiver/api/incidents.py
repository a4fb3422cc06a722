"""Incidents: listing, one with its heal logs, and a person's approve or deny."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from receiver import appkeys, evidence, openapi
from receiver.api.http import decided_by, int_param, json_response, problem
from receiver.approval import Decision, decide
from receiver.db import repo
from receiver.domain import ApprovalState, ErrorType, EscalationReason, IncidentStatus
from receiver.notify import announcer
from receiver.openapi import documented
from receiver.payloads import (
    DecisionReport,
)

log = logging.getLogger(__name__)
routes = web.RouteTableDef()


def _incident_json(row: Mapping[str, Any]) -> dict[str, Any]:
    data = dict(row)
    data.pop("lease_until", None)
    # Opened -> verified resolved, for an incident a repair healed.
    healed_at = row.get("resolved_at") if row.get("healed") else None
    data["time_to_heal_seconds"] = (
        round((healed_at - row["created_at"]).total_seconds(), 3) if healed_at else None
    )
    return data


@routes.get("/api/v1/incidents")
@documented(
    summary="Incidents, newest first, paged",
    query=openapi.INCIDENT_QUERY,
    responses={200: openapi.IncidentPage, 400: openapi.Problem, 503: openapi.Problem},
)
async def list_incidents(request: web.Request) -> web.Response:
    status = request.query.get("status")
    if status is not None and status not in IncidentStatus.__members__.values():
        raise problem(
            400, "bad_parameter", f"status must be one of {[s.value for s in IncidentStatus]}"
        )
    error_type = request.query.get("error_type")
    if error_type is not None and error_type not in ErrorType.__members__:
        raise problem(400, "bad_parameter", f"unknown error_type {error_type!r}")
    limit = int_param(request, "limit", 50, 1, 500)
    offset = int_param(request, "offset", 0, 0, 10**9)
    async with request.app[appkeys.DATABASE].reading() as conn:
        items, total = await repo.list_incidents(
            conn, status=status, error_type=error_type, limit=limit, offset=offset
        )
    return json_response(
        {
            "items": [_incident_json(r) for r in items],
            "total": total,
            "limit": limit,
            "offset": offset,
        }
    )


@routes.get("/api/v1/incidents/{id}")
@documented(
    summary="One incident with its heal logs",
    responses={
        200: openapi.IncidentDetail,
        400: openapi.Problem,
        404: openapi.Problem,
        503: openapi.Problem,
    },
)
async def get_incident(request: web.Request) -> web.Response:
    incident_id = incident_id_of(request)
    async with request.app[appkeys.DATABASE].reading() as conn:
        row = await conn.run_sync(repo.get_incident, incident_id)
        if row is None:
            raise problem(404, "not_found", f"no incident {incident_id}")
        logs = [
            {**log, "evidence_summary": evidence.summary(log["evidence"])}
            for log in await repo.incident_heal_logs(conn, incident_id)
        ]
        # No playbook for it: what healed the most similar faults before.
        similar = (
            await conn.run_sync(repo.knowledge.similar, row["error_message"])
            if row["escalation_reason"] == EscalationReason.NO_PLAYBOOK
            else []
        )
    return json_response({**_incident_json(row), "heal_logs": logs, "similar_healed": similar})


def incident_id_of(request: web.Request) -> int:
    try:
        incident_id = int(request.match_info["id"])
    except ValueError as exc:
        raise problem(400, "bad_parameter", "incident id must be an integer") from exc
    if not 0 < incident_id < 2**31:  # past the column's range: PostgreSQL would refuse it
        raise problem(404, "not_found", f"no incident {incident_id}")
    return incident_id


async def record_decision(
    app: web.Application, incident_id: int, approve: bool, by: str, attempt: int | None = None
) -> Decision:
    """Record it (raises NotAwaiting); an approval is run by this replica's worker at once."""
    decision = await decide(
        app[appkeys.DATABASE],
        app[appkeys.METRICS],
        announcer(app[appkeys.SETTINGS]),
        incident_id,
        approve=approve,
        by=by,
        attempt=attempt,
    )
    if approve and appkeys.WORKER in app:
        app[appkeys.WORKER].wake()
    return decision


async def _decide(request: web.Request, approve: bool) -> web.Response:
    incident_id = incident_id_of(request)
    decision = await record_decision(request.app, incident_id, approve, await decided_by(request))
    status = (ApprovalState.APPROVED if approve else ApprovalState.DENIED).value
    return json_response({"status": status, "incident": decision.incident_id, "by": decision.by})


# What approve and deny take and answer (the body may be left out).
_DECISION_DOC: dict[str, Any] = {
    "body": DecisionReport,
    "body_optional": True,
    "responses": {
        200: openapi.Decided,
        400: openapi.Problem,
        404: openapi.Problem,
        409: openapi.Problem,
        503: openapi.Problem,
    },
    "tag": "approval",
}


@routes.post("/api/v1/incidents/{id}/approve")
@documented(summary="Approve a repair that waits for approval", **_DECISION_DOC)
async def approve_incident(request: web.Request) -> web.Response:
    """Let a repair that requires approval run (body optional: {"by": "name"})."""
    return await _decide(request, True)


@routes.post("/api/v1/incidents/{id}/deny")
@documented(summary="Deny it: the incident is escalated denied", **_DECISION_DOC)
async def deny_incident(request: web.Request) -> web.Response:
    """Refuse it: the incident is escalated ``denied``."""
    return await _decide(request, False)
