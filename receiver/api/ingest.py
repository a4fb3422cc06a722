"""Ingest: the Alertmanager webhook, a scheduler's exception report and its start and success
pings. Each answers 2xx only after what it carries is committed."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from sqlalchemy import Connection

from receiver import appkeys, openapi
from receiver.alertmanager_api import as_webhook_alert
from receiver.api.http import json_response, parse, problem
from receiver.db import repo
from receiver.domain import ErrorType, Resolved, ResolveKind, RunOutcome
from receiver.effects import Effects
from receiver.matchers import Matcher, MatchOp
from receiver.notify import Announcer, announcer
from receiver.openapi import documented
from receiver.payloads import (
    Alert,
    AlertmanagerWebhook,
    ExceptionReport,
    RunPing,
    StartReport,
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
    summary="Alertmanager webhook (version 4) or Grafana's webhook contact point (version 1)",
    body=AlertmanagerWebhook,
    responses={200: openapi.AlertsStored, 503: openapi.Problem},
    tag="ingest",
)
async def post_alerts(request: web.Request) -> web.Response:
    """Alertmanager webhook (version 4), or Grafana Alerting's webhook contact point
    (version 1). 200 once every alert of the group is committed."""
    payload = await parse(request, AlertmanagerWebhook)
    limit = request.app[appkeys.SETTINGS].max_alerts_per_request
    if len(payload.alerts) > limit:
        raise problem(413, "too_many_alerts", f"{len(payload.alerts)} alerts, limit {limit}")
    signals = from_webhook(payload, request.app[appkeys.CATALOG].current.classifier)
    ignored = len(payload.alerts) - len(signals)
    if ignored:
        # Our own AutoHealEscalated alerts, routed back: acknowledged (2xx, or Alertmanager
        # would resend them forever) and never healed.
        source = "grafana" if payload.from_grafana else "alertmanager"
        request.app[appkeys.METRICS].signals.labels(source, "ignored").inc(ignored)
    ids = await _store(request, signals) if signals else []
    fetched = 0
    if payload.truncated_alerts and payload.status == "firing":
        if payload.from_grafana:  # its alerts are not in Alertmanager: nothing to ask
            log.warning(
                "Grafana left %d alerts out of a webhook; raise the contact point's max alerts",
                payload.truncated_alerts,
            )
            request.app[appkeys.METRICS].truncated_fetched.labels("failed").inc(
                payload.truncated_alerts
            )
        else:
            fetched = await _fetch_truncated(request, payload)
    return json_response(
        {
            "status": "stored",
            "alerts": len(signals),
            "ignored": ignored,
            "incidents": ids,
            "fetched": fetched,
        }
    )


async def _fetch_truncated(request: web.Request, payload: AlertmanagerWebhook) -> int:
    """The alerts Alertmanager left out of this group's webhook (its ``max_alerts``): asked
    of its API with the group's labels as the filter, stored as if they had come with it
    (the same idempotency keys: an alert delivered later is counted once). What arrived is
    already stored: a failure here is logged and counted, and the webhook still answered."""
    app = request.app
    api = app[appkeys.RESOURCES].alertmanager if appkeys.RESOURCES in app else None
    metrics = app[appkeys.METRICS]
    if api is None:
        log.warning(
            "a webhook left out %d alert(s) (truncatedAlerts) and no alertmanager_url is set "
            "to fetch them: raise max_alerts or set AUTOHEAL_ALERTMANAGER_URL",
            payload.truncated_alerts,
        )
        return 0
    if not payload.group_labels:
        # group_by: ['...'] (or none): no labels name the group, and asking for every active
        # alert would take in other routes' alerts as this group's.
        log.warning(
            "a webhook left out %d alert(s) (truncatedAlerts) of a group without group "
            "labels: not fetched; raise max_alerts",
            payload.truncated_alerts,
        )
        metrics.truncated_fetched.labels("failed").inc(payload.truncated_alerts)
        return 0
    matchers = [str(Matcher(k, MatchOp.EQ, v)) for k, v in sorted(payload.group_labels.items())]
    found = await api.alerts(matchers, silenced=False, inhibited=False)
    if found is None:
        metrics.truncated_fetched.labels("failed").inc(payload.truncated_alerts)
        log.warning(
            "%d truncated alert(s) not fetched: no Alertmanager answered", payload.truncated_alerts
        )
        return 0
    have = {a.fingerprint for a in payload.alerts}
    limit = app[appkeys.SETTINGS].max_alerts_per_request
    rest = [
        as_webhook_alert(a) for a in found if a.fingerprint not in have and a.state == "active"
    ][:limit]
    if not rest:
        return 0
    more = payload.model_copy(update={"alerts": [Alert.model_validate(a) for a in rest]})
    signals = from_webhook(more, app[appkeys.CATALOG].current.classifier)
    if signals:
        await _store(request, signals)
    metrics.truncated_fetched.labels("fetched").inc(len(rest))
    return len(rest)


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
    if report.run is not None:
        at = _when(report.occurred_at)
        _, took = await request.app[appkeys.DATABASE].run_in_transaction(
            repo.task_runs.finished, report.task, report.run, at, RunOutcome.FAILED, short=True
        )
        _observe_run(request.app, report.task, took)
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
    closed, effects, took = await request.app[appkeys.DATABASE].run_in_transaction(
        _task_succeeded, announce, report, datetime.now(UTC), short=True
    )
    effects.apply(request.app[appkeys.METRICS], request.app[appkeys.CATALOG].current.names)
    _observe_run(request.app, report.task, took)
    return json_response({"status": "stored", "resolved": [r.id for r in closed]})


def _observe_run(app: web.Application, task: str, seconds: float | None) -> None:
    """A finished run's duration, for declared tasks (the label set stays the file's)."""
    if seconds is not None and any(t.name == task for t in app[appkeys.CATALOG].current.tasks):
        app[appkeys.METRICS].task_run_seconds.labels(task).observe(seconds)


@routes.post("/api/v1/start")
@documented(
    summary="A scheduler's start ping: a run of the task began",
    body=StartReport,
    responses={202: openapi.RunStored, 503: openapi.Problem},
    tag="ingest",
)
async def post_start(request: web.Request) -> web.Response:
    """A run started (a declared task's run that never ends is noticed by its
    max_duration). 202 once committed; a resent start changes nothing."""
    report = await parse(request, StartReport)
    run = report.run_key or uuid.uuid4().hex
    announce = announcer(request.app[appkeys.SETTINGS])
    fresh, effects = await request.app[appkeys.DATABASE].run_in_transaction(
        _run_started, announce, report.task, run, _when(report.at), datetime.now(UTC), short=True
    )
    effects.apply(request.app[appkeys.METRICS], request.app[appkeys.CATALOG].current.names)
    return json_response({"status": "stored" if fresh else "known", "run": run}, 202)


def _run_started(
    conn: Connection, announce: Announcer, task: str, run: str, at: datetime, now: datetime
) -> tuple[bool, Effects]:
    """The run stored; the task's missed-run incident, if open, resolved: it runs again."""
    w = Writes("", now, announce)
    fresh = repo.task_runs.started(conn, task, run, at)
    if fresh:
        missed = repo.resolve_task(conn, task, now, [ErrorType.MISSED_RUN.value])
        w.resolved(ResolveKind.TASK_STARTED, missed)
    w.flush(conn)
    return fresh, w.effects


def _when(at: datetime | None) -> datetime:
    """When a report says it happened: never later than now (a client's clock ahead)."""
    now = datetime.now(UTC)
    return now if at is None or at > now else at


def _task_succeeded(
    conn: Connection, announce: Announcer, report: RunPing, now: datetime
) -> tuple[list[Resolved], Effects, float | None]:
    """The run finished (how long it took) and the task's incidents resolved, and what that
    implies, written as the worker writes it. A resent ping (its run already finished)
    resolves nothing."""
    task, run, took = report.task, report.run_key, None
    if run is not None:
        at = _when(report.at)
        fresh, took = repo.task_runs.finished(conn, task, run, at, RunOutcome.SUCCESS)
        if not fresh:
            return [], Writes("", now, announce).effects, None
    closed = repo.resolve_task(conn, task, now)
    w = Writes("", now, announce)
    w.resolved(ResolveKind.TASK_SUCCESS, closed)
    w.flush(conn)
    return closed, w.effects, took
