"""HTTP handlers: authenticate (middleware), validate, persist, answer. No business logic."""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler
from aiohttp.web_protocol import RequestPayloadError
from pydantic import BaseModel, ValidationError
from sqlalchemy import Connection, text
from sqlalchemy.exc import SQLAlchemyError

from receiver import appkeys, openapi
from receiver.approval import Decision, NotAwaiting, decide
from receiver.catalog import load_catalog
from receiver.config import Settings
from receiver.db import repo
from receiver.db.migrate import HEAD_REVISION, current_revision
from receiver.domain import ErrorType, IncidentStatus, Resolved, ResolveKind
from receiver.effects import Effects
from receiver.errors import AutohealError
from receiver.jsoncodec import dumps, dumps_bytes
from receiver.notify import Announcer, announcer
from receiver.notify.base import NotifyError
from receiver.openapi import documented
from receiver.payloads import (
    AlertmanagerWebhook,
    DecisionReport,
    ExceptionReport,
    SuccessReport,
    TelegramCallback,
    TelegramUpdate,
)
from receiver.signals import from_exception, from_webhook
from receiver.worker.writes import Writes

log = logging.getLogger(__name__)
routes = web.RouteTableDef()
M = TypeVar("M", bound=BaseModel)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=dumps_bytes(data), status=status, content_type="application/json")


_ERRORS: dict[int, type[web.HTTPException]] = {
    400: web.HTTPBadRequest,
    404: web.HTTPNotFound,
    408: web.HTTPRequestTimeout,
    415: web.HTTPUnsupportedMediaType,
    409: web.HTTPConflict,
    422: web.HTTPUnprocessableEntity,
    500: web.HTTPInternalServerError,
    503: web.HTTPServiceUnavailable,
}


def _problem(status: int, error: str, detail: str, **extra: Any) -> web.HTTPException:
    """A JSON error body: {"error": code, "detail": text, ...}."""
    body = dumps({"error": error, "detail": detail, **extra})
    if status == 413:
        return web.HTTPRequestEntityTooLarge(
            max_size=0, actual_size=0, text=body, content_type="application/json"
        )
    return _ERRORS[status](text=body, content_type="application/json")


# A JSON \u0000 escape (a NUL), not the text "\u0000" written with an escaped backslash: the
# escape's backslash is preceded by an even number of backslashes (JSON allows them only as
# escapes inside strings, so pairs are escaped backslashes).
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


async def _parse(request: web.Request, model: type[M]) -> M:
    """Body -> model, or a 4xx that names what is wrong."""
    if request.content_type != "application/json":
        raise _problem(415, "unsupported_media_type", "send Content-Type: application/json")
    limit = request.app[appkeys.SETTINGS].max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise _problem(413, "too_large", f"body over {limit} bytes")
    try:
        # Credentials were checked before this read (auth middleware); a body trickled in
        # slower than the deadline gives up its connection. (Most bodies arrived with their
        # head: no deadline to arm for those.)
        if request.content.is_eof():
            raw = await request.read()
        else:
            async with asyncio.timeout(request.app[appkeys.SETTINGS].body_timeout_seconds):
                raw = await request.read()  # client_max_size also stops chunked bodies
    except TimeoutError as exc:
        raise _problem(408, "body_timeout", "the body did not arrive in time") from exc
    except web.HTTPRequestEntityTooLarge as exc:
        raise _problem(413, "too_large", f"body over {limit} bytes") from exc
    except (HttpProcessingError, RequestPayloadError) as exc:
        # Undecodable Content-Encoding (bad gzip or deflate, trailing garbage): the client's.
        raise _problem(
            400, "bad_content_encoding", f"body cannot be decoded ({type(exc).__name__})"
        ) from exc
    try:
        body = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _problem(400, "bad_encoding", f"body is not UTF-8 (byte {exc.start})") from exc
    # The substring test first: the regex costs ~80 us per KB, the test ~0.5.
    if "\\u0000" in body and _NUL_ESCAPE.search(body):
        # PostgreSQL text cannot hold NUL; stored it would fail every retry (and Alertmanager
        # would retry forever), so refuse it here.
        raise _problem(400, "invalid_json", "NUL characters (\\u0000) are not accepted")
    try:
        # pydantic parses and validates in one pass (about half the cost of json.loads + validate).
        return model.model_validate_json(body)
    except ValidationError as exc:
        problems = exc.errors(include_url=False)
        if problems[0]["type"] == "json_invalid":
            # Not JSON at all, or nesting deeper than the parser allows.
            raise _problem(400, "invalid_json", f"not valid JSON: {problems[0]['msg']}") from exc
        errors = [
            {"field": ".".join(map(str, e["loc"])) or "(body)", "message": e["msg"]}
            for e in problems[:20]
        ]
        first = errors[0]
        raise _problem(
            422, "invalid_payload", f"{first['field']}: {first['message']}", errors=errors
        ) from exc


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
    payload = await _parse(request, AlertmanagerWebhook)
    limit = request.app[appkeys.SETTINGS].max_alerts_per_request
    if len(payload.alerts) > limit:
        raise _problem(413, "too_many_alerts", f"{len(payload.alerts)} alerts, limit {limit}")
    signals = from_webhook(payload, request.app[appkeys.CATALOG].current.classifier)
    ignored = len(payload.alerts) - len(signals)
    if ignored:
        # Our own AutoHealEscalated alerts, routed back: acknowledged (2xx, or Alertmanager
        # would resend them forever) and never healed.
        request.app[appkeys.METRICS].signals.labels("alertmanager", "ignored").inc(ignored)
    ids = await _store(request, signals) if signals else []
    return _json({"status": "stored", "alerts": len(signals), "ignored": ignored, "incidents": ids})


@routes.post("/api/v1/exceptions")
@documented(
    summary="A scheduler's exception report: stored, then 202",
    body=ExceptionReport,
    responses={202: openapi.ExceptionStored, 503: openapi.Problem},
    tag="ingest",
)
async def post_exception(request: web.Request) -> web.Response:
    """A scheduler's exception report. 202 once committed."""
    report = await _parse(request, ExceptionReport)
    signal = from_exception(report, request.app[appkeys.CATALOG].current.classifier)
    ids = await _store(request, [signal])
    return _json(
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
    report = await _parse(request, SuccessReport)
    announce = announcer(request.app[appkeys.SETTINGS])
    closed, effects = await request.app[appkeys.DATABASE].run_in_transaction(
        _task_succeeded, announce, report.task, datetime.now(UTC), short=True
    )
    effects.apply(request.app[appkeys.METRICS], request.app[appkeys.CATALOG].current.names)
    return _json({"status": "stored", "resolved": [r.id for r in closed]})


def _task_succeeded(
    conn: Connection, announce: Announcer, task: str, now: datetime
) -> tuple[list[Resolved], Effects]:
    """The task's incidents resolved, and what that implies, written as the worker writes it."""
    closed = repo.resolve_task(conn, task, now)
    w = Writes("", now, announce)
    w.resolved(ResolveKind.TASK_SUCCESS, closed)
    w.flush(conn)
    return closed, w.effects


def _int_param(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise _problem(400, "bad_parameter", f"{name} must be an integer") from exc
    if not lo <= value <= hi:
        raise _problem(400, "bad_parameter", f"{name} must be between {lo} and {hi}")
    return value


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
        raise _problem(
            400, "bad_parameter", f"status must be one of {[s.value for s in IncidentStatus]}"
        )
    error_type = request.query.get("error_type")
    if error_type is not None and error_type not in ErrorType.__members__:
        raise _problem(400, "bad_parameter", f"unknown error_type {error_type!r}")
    limit = _int_param(request, "limit", 50, 1, 500)
    offset = _int_param(request, "offset", 0, 0, 10**9)
    async with request.app[appkeys.DATABASE].reading() as conn:
        items, total = await repo.list_incidents(
            conn, status=status, error_type=error_type, limit=limit, offset=offset
        )
    return _json(
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
    incident_id = _incident_id(request)
    async with request.app[appkeys.DATABASE].reading() as conn:
        row = await conn.run_sync(repo.get_incident, incident_id)
        if row is None:
            raise _problem(404, "not_found", f"no incident {incident_id}")
        logs = await repo.incident_heal_logs(conn, incident_id)
        # No playbook for it: what healed the most similar faults before.
        similar = (
            await conn.run_sync(repo.knowledge.similar, row["error_message"])
            if row["escalation_reason"] == "no_playbook"
            else []
        )
    return _json({**_incident_json(row), "heal_logs": logs, "similar_healed": similar})


@routes.get("/api/v1/playbooks")
@documented(
    summary="Playbooks with their counts",
    responses={200: openapi.Items, 503: openapi.Problem},
)
async def list_playbooks(request: web.Request) -> web.Response:
    async with request.app[appkeys.DATABASE].reading() as conn:
        rows = await repo.list_playbooks(conn)
    return _json({"items": rows})


def _incident_id(request: web.Request) -> int:
    try:
        incident_id = int(request.match_info["id"])
    except ValueError as exc:
        raise _problem(400, "bad_parameter", "incident id must be an integer") from exc
    if not 0 < incident_id < 2**31:  # past the column's range: PostgreSQL would refuse it
        raise _problem(404, "not_found", f"no incident {incident_id}")
    return incident_id


async def _record_decision(
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
    incident_id = _incident_id(request)
    by = "api"
    if request.can_read_body:
        body = await _parse(request, DecisionReport)
        by = body.by or by
    decision = await _record_decision(request.app, incident_id, approve, f"{by} (api)")
    status = "approved" if approve else "denied"
    return _json({"status": status, "incident": decision.incident_id, "by": decision.by})


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


@routes.post("/api/v1/telegram/updates")
@documented(
    summary="Telegram's webhook: approval button presses (its secret-token header)",
    body=TelegramUpdate,
    public=True,
    extra_headers=("X-Telegram-Bot-Api-Secret-Token",),
    responses={
        200: openapi.TelegramAnswer,
        401: openapi.Problem,
        404: openapi.Problem,
        503: openapi.Problem,
    },
    tag="approval",
)
async def telegram_updates(request: web.Request) -> web.Response:
    """Telegram's webhook (setWebhook with secret_token): approval button presses. Not behind
    the bearer token (Telegram cannot send it); the secret header is checked instead, and
    only the configured chat and approvers may decide."""
    settings = request.app[appkeys.SETTINGS]
    telegram = request.app.get(appkeys.TELEGRAM)
    secret = settings.telegram_webhook_secret
    if secret is None or telegram is None:
        raise _problem(404, "not_found", "Telegram updates are not enabled")
    given = request.headers.get("X-Telegram-Bot-Api-Secret-Token", "")
    if not hmac.compare_digest(given.encode(), secret.get_secret_value().encode()):
        return _json({"error": "unauthorized", "detail": "wrong secret token"}, 401)
    update = await _parse(request, TelegramUpdate)
    query = update.callback_query
    if query is None:
        return _json({"status": "ignored"})  # not a button press
    answer = _refusal(settings, query)
    if answer is None:
        action, incident, attempt = query.data.split(":")
        who = f"{query.sender.username or query.sender.id} (telegram {query.sender.id})"
        approve = action == "approve"
        try:
            await _record_decision(request.app, int(incident), approve, who, int(attempt))
            answer = f"incident {incident}: {'approved' if approve else 'denied'}"
        except NotAwaiting:
            answer = f"incident {incident} is no longer waiting for this decision"
    else:
        log.warning(
            "telegram: refused a button press from user %s in chat %s: %s",
            query.sender.id,
            query.chat_id,
            answer,
        )
    try:
        await telegram.answer_callback(query.id, answer)
    except NotifyError as exc:
        log.warning("telegram: could not answer the button press: %s", exc)
    return _json({"status": "ok", "answer": answer})


_CALLBACK = re.compile(r"(approve|deny):(\d{1,10}):\d{1,4}")


def _refusal(settings: Settings, query: TelegramCallback) -> str | None:
    """Why a button press may not decide, or None when it may."""
    if query.chat_id is None or str(query.chat_id) != settings.telegram_chat_id:
        return "not allowed from this chat"
    if query.sender.id not in settings.approver_ids:
        return "you are not an approver"
    button = _CALLBACK.fullmatch(query.data)
    if button is None or not 0 < int(button[2]) < 2**31:  # beyond the id column's range
        return "unknown button"
    return None


@routes.get("/api/v1/knowledge")
@documented(
    summary="What worked for which fault",
    query=openapi.KNOWLEDGE_QUERY,
    responses={200: openapi.Items, 400: openapi.Problem, 503: openapi.Problem},
)
async def list_knowledge(request: web.Request) -> web.Response:
    """What worked for which fault: per (error type, signature, playbook)."""
    error_type = request.query.get("error_type")
    if error_type is not None and error_type not in ErrorType.__members__:
        raise _problem(400, "bad_parameter", f"unknown error_type {error_type!r}")
    limit = _int_param(request, "limit", 100, 1, 1000)
    async with request.app[appkeys.DATABASE].reading() as conn:
        items = await repo.knowledge.list_knowledge(
            conn, error_type=error_type, playbook=request.query.get("playbook"), limit=limit
        )
    return _json({"items": items})


@routes.post("/-/reload")
@documented(
    summary="Re-read playbooks and classifier rules",
    responses={200: openapi.Reloaded, 422: openapi.Problem, 503: openapi.Problem},
    tag="operations",
)
async def reload(request: web.Request) -> web.Response:
    """Re-read playbooks and classifier rules; a bad file leaves the running set in place."""
    settings = request.app[appkeys.SETTINGS]
    catalog = await load_catalog(
        request.app[appkeys.DATABASE],
        settings.playbooks,
        settings.param_scope(),
        request.app[appkeys.ACTIONS],
    )
    request.app[appkeys.CATALOG].current = catalog
    request.app[appkeys.METRICS].loaded(catalog.playbooks)
    return _json({"status": "reloaded", "playbooks": len(catalog.playbooks)})


@routes.get("/healthz")
@documented(summary="Liveness", public=True, responses={200: openapi.Health}, tag="operations")
async def healthz(request: web.Request) -> web.Response:
    return _json({"status": "ok"})


@routes.get("/readyz")
@documented(
    summary="Readiness: the store reads, takes writes and is migrated",
    public=True,
    responses={200: openapi.Health, 503: openapi.Health},
    tag="operations",
)
async def readyz(request: web.Request) -> web.Response:
    db = request.app[appkeys.DATABASE]
    try:
        async with db.reading() as conn:
            await conn.execute(text("SELECT 1"))
        revision = await current_revision(db)
    except (SQLAlchemyError, OSError) as exc:
        return _json({"status": "unavailable", "detail": type(exc).__name__}, 503)
    if revision != HEAD_REVISION:
        return _json({"status": "migrating", "revision": revision, "head": HEAD_REVISION}, 503)
    if db.health.refusing is not None:
        # The last write failed (a full disk, an I/O error) while reads still work: ready
        # again only once a write goes through. Probed here, so a replica taken out of
        # rotation (no traffic, no writes) still comes back.
        try:
            await db.run_in_transaction(repo.write_probe)
        except (SQLAlchemyError, OSError):
            detail = f"the store refuses writes ({db.health.refusing})"
            return _json({"status": "unavailable", "detail": detail}, 503)
    return _json({"status": "ready", "revision": revision})


@routes.get(openapi.PATH)
@documented(
    summary="This document (OpenAPI 3.1)",
    public=True,
    responses={200: "application/json"},
    tag="operations",
)
async def openapi_document(request: web.Request) -> web.Response:
    return web.Response(body=request.app[appkeys.OPENAPI], content_type="application/json")


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """autoheal's own errors become their status and problem body (``errors.AutohealError``);
    store trouble is a 503 (retry later); nothing a client sends becomes a 500."""
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except web.HTTPException:
        raise
    except AutohealError as exc:
        detail, extra = exc.problem()
        raise _problem(exc.http_status, exc.code, detail, **extra) from exc
    except SQLAlchemyError as exc:
        log.warning("store error on %s %s: %s", request.method, request.path, type(exc).__name__)
        raise _problem(503, "store_unavailable", "the store is unavailable, retry later") from exc
