"""Ingest: the Alertmanager webhook, a scheduler's exception report and success ping.
Each answers 2xx only after what it carries is committed."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from sqlalchemy import Connection

from receiver import appkeys, openapi
from receiver.api.http import json_response, parse, problem
from receiver.db import repo
from receiver.domain import Resolved, ResolveKind
from receiver.effects import Effects
from receiver.notify import Announcer, announcer
from receiver.openapi import documented
from receiver.payloads import (
    AlertmanagerWebhook,
    ExceptionReport,
    SuccessReport,
)
from receiver.signals import from_exception, from_webhook
from receiver.worker.writes import Writes

log = logging.getLogger(__name__)
routes = web.RouteTableDef()


async def _store(request: web.Request, signals: list[Any]) -> list[int | None]:
    # StoreUnavailable (503: sent again later) and Unstorable (422: never) reach the
    # error middleware.
    return await request.app[appkeys.INGESTOR].submit(signals)


@routes.post("/api/v1/alerts")
@documented(
    summary="Alertmanager webhook (version 4): stored, then 200",
    body=AlertmanagerWebhook,
    responses={200: openapi.AlertsStored, 503: openapi.Problem},
    tag="ingest",
)
async def post_alerts(request: web.Request) -> web.Response:
    """Alertmanager webhook (version 4). 200 once every alert of the group is committed."""
    payload = await parse(request, AlertmanagerWebhook)
    limit = request.app[appkeys.SETTINGS].max_alerts_per_request
    if len(payload.alerts) > limit:
        raise problem(413, "too_many_alerts", f"{len(payload.alerts)} alerts, limit {limit}")
    signals = from_webhook(payload, request.app[appkeys.CATALOG].current.classifier)
    ignored = len(payload.alerts) - len(signals)
    if ignored:
        # Our own AutoHealEscalated alerts, routed back: acknowledged (2xx, or Alertmanager
        # would resend them forever) and never healed.
        request.app[appkeys.METRICS].signals.labels("alertmanager", "ignored").inc(ignored)
    ids = await _store(request, signals) if signals else []
    return json_response(
        {"status": "stored", "alerts": len(signals), "ignored": ignored, "incidents": ids}
    )


@routes.post("/api/v1/exceptions")
@documented(
    summary="A scheduler's exception report: stored, then 202",
    body=ExceptionReport,
    responses={202: openapi.ExceptionStored, 503: openapi.Problem},
    tag="ingest",
)
async def post_exception(request: web.Request) -> web.Response:
    """A scheduler's exception report. 202 once committed."""
    report = await parse(request, ExceptionReport)
    signal = from_exception(report, request.app[appkeys.CATALOG].current.classifier)
    ids = await _store(request, [signal])
    return json_response(
        {"status": "stored", "incident": ids[0], "error_type": signal.error_type.value}, 202
    )


@routes.post("/api/v1/success")
@documented(
    summary="A scheduler's success ping: resolves the task's incidents",
    body=SuccessReport,
    responses={200: openapi.TasksResolved, 503: openapi.Problem},
    tag="ingest",
)
async def post_success(request: web.Request) -> web.Response:
    """A scheduler's success ping: the task's incidents are resolved."""
    report = await parse(request, SuccessReport)
    announce = announcer(request.app[appkeys.SETTINGS])
    closed, effects = await request.app[appkeys.DATABASE].run_in_transaction(
        _task_succeeded, announce, report.task, datetime.now(UTC), short=True
    )
    effects.apply(request.app[appkeys.METRICS], request.app[appkeys.CATALOG].current.names)
    return json_response({"status": "stored", "resolved": [r.id for r in closed]})


def _task_succeeded(
    conn: Connection, announce: Announcer, task: str, now: datetime
) -> tuple[list[Resolved], Effects]:
    """The task's incidents resolved, and what that implies, written as the worker writes it."""
    closed = repo.resolve_task(conn, task, now)
    w = Writes("", now, announce)
    w.resolved(ResolveKind.TASK_SUCCESS, closed)
    w.flush(conn)
    return closed, w.effects
