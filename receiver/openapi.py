"""The OpenAPI 3.1 document, built from the routes and the pydantic models at the edges.

Each handler says what it takes and answers with ``@documented(...)``; ``build`` walks the
app's router, so a route without a description (or a description without a route) is an
error the suite catches, and the request schemas are the very models that validate bodies.
Served at ``/api/v1/openapi.json``; schemathesis fuzzes a running ``autoheal serve`` with it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict
from pydantic.json_schema import models_json_schema

from receiver.auth import is_page
from receiver.domain import ErrorType, IncidentStatus

F = TypeVar("F", bound=Callable[..., Any])
VERSION = "1.0.0"
PATH = "/api/v1/openapi.json"


# Responses. Handlers build dicts (the hot paths serialise with orjson); these models state
# their shape. Fields a newer version adds are allowed.
class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class FieldProblem(BaseModel):
    field: str
    message: str


class Problem(_Open):
    """Every error: a code, a sentence, and for a body that fails validation, each field."""

    error: str
    detail: str
    errors: list[FieldProblem] | None = None


class AlertsStored(BaseModel):
    status: Literal["stored"]
    alerts: int
    ignored: int
    incidents: list[int | None]
    fetched: int = 0  # alerts the webhook left out (truncatedAlerts), fetched from Alertmanager


class ExceptionStored(BaseModel):
    status: Literal["stored"]
    incident: int | None
    error_type: ErrorType


class RunStored(BaseModel):
    status: Literal["stored", "known"]
    run: str


class TasksResolved(BaseModel):
    status: Literal["stored"]
    resolved: list[int]


class Incident(_Open):
    id: int
    status: IncidentStatus
    source: str
    task_name: str
    error_type: ErrorType
    severity: str
    error_message: str
    escalation_reason: str | None
    escalation_detail: str | None
    retry_count: int
    occurrences: int
    labels: dict[str, str] | None
    annotations: dict[str, str] | None
    target: str | None
    playbook_id: int | None
    generator_url: str | None
    links: dict[str, str] | None = None
    created_at: datetime
    updated_at: datetime
    resolved_at: datetime | None
    healed: bool | None
    time_to_heal_seconds: float | None


class HealLog(_Open):
    id: int
    incident_id: int
    action_type: str
    action_detail: str | None
    target: str | None
    result: str
    reason: str | None
    result_output: str | None
    attempt: int
    created_at: datetime
    finished_at: datetime | None
    # Before the action: container State, log tail, host diagnostic (README, Evidence).
    evidence: dict[str, Any] | None
    evidence_summary: str | None


class IncidentDetail(Incident):
    heal_logs: list[HealLog]
    similar_healed: list[dict[str, Any]]


class IncidentPage(BaseModel):
    items: list[Incident]
    total: int
    limit: int
    offset: int


class Items(BaseModel):
    items: list[dict[str, Any]]


class Decided(BaseModel):
    status: Literal["approved", "denied"]
    incident: int
    by: str


class TelegramAnswer(_Open):
    status: Literal["ok", "ignored"]
    answer: str | None = None


class PauseState(BaseModel):
    status: Literal["paused", "running"]
    reason: str | None = None
    by: str | None = None
    since: str | None = None
    until: str | None = None
    woke: int | None = None  # on resume: incidents the pause held back, now due


class QuarantinedTarget(BaseModel):
    target: str
    since: str
    reason: str
    incident_id: int | None = None


class QuarantineList(BaseModel):
    targets: list[QuarantinedTarget]


class QuarantineLifted(QuarantinedTarget):
    lifted_by: str


class Reloaded(BaseModel):
    status: Literal["reloaded"]
    playbooks: int


class Health(_Open):
    status: str
    detail: str | None = None
    revision: str | None = None
    head: str | None = None


@dataclass(frozen=True, slots=True)
class Query:
    name: str
    schema: Mapping[str, Any]
    description: str = ""


@dataclass(frozen=True, slots=True)
class Operation:
    summary: str
    responses: Mapping[int, type[BaseModel] | str]  # a model, or a media type without one
    body: type[BaseModel] | None = None
    body_optional: bool = False
    query: Sequence[Query] = ()
    public: bool = False  # no credentials (probes, scrapes, Telegram's own secret)
    tag: str = "api"
    extra_headers: Sequence[str] = field(default_factory=tuple)


# The errors every authenticated operation with a JSON body may answer.
BODY_ERRORS = (400, 401, 408, 413, 415, 422)


def documented(**kw: Any) -> Callable[[F], F]:
    """Attach the operation's description to its handler."""
    op = Operation(**kw)

    def mark(handler: F) -> F:
        handler.__openapi__ = op  # type: ignore[attr-defined]
        return handler

    return mark


def _operations(app: web.Application) -> dict[tuple[str, str], Operation]:
    found: dict[tuple[str, str], Operation] = {}
    for route in app.router.routes():
        if route.method == "HEAD":
            continue
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter") or info.get("prefix")
        if is_page(str(path)):
            continue  # the web page for people, not the API
        op = getattr(route.handler, "__openapi__", None)
        if op is None:
            raise LookupError(f"{route.method} {path}: no @documented description")
        found[route.method.lower(), str(path)] = op
    return found


def build(app: web.Application) -> dict[str, Any]:
    """The whole document for the app's routes."""
    operations = _operations(app)
    models: dict[type[BaseModel], Literal["validation", "serialization"]] = {Problem: "validation"}
    for op in operations.values():
        if op.body is not None:
            models[op.body] = "validation"
        for response in op.responses.values():
            if isinstance(response, type):
                models.setdefault(response, "validation")
    refs, defs = models_json_schema(
        [(m, mode) for m, mode in models.items()],
        by_alias=True,
        ref_template="#/components/schemas/{model}",
    )
    ref = {m: refs[(m, mode)] for m, mode in models.items()}
    paths: dict[str, dict[str, Any]] = {}
    for (method, path), op in sorted(operations.items()):
        entry: dict[str, Any] = {
            "summary": op.summary,
            "operationId": method
            + "_"
            + path.strip("/")
            .replace("{id}", "by_id")
            .replace("{target}", "by_target")
            .replace("/", "_")
            .replace("-", ""),
            "tags": [op.tag],
            "responses": {},
        }
        parameters: list[dict[str, Any]] = [
            {"name": q.name, "in": "query", "schema": dict(q.schema), "description": q.description}
            for q in op.query
        ]
        if "{id}" in path:
            parameters.append(
                {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}
            )
        if "{target}" in path:  # a quarantined target, as listed ("local/db1")
            parameters.append(
                {
                    "name": "target",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "minLength": 1, "maxLength": 300},
                }
            )
        parameters += [
            {"name": h, "in": "header", "required": False, "schema": {"type": "string"}}
            for h in op.extra_headers
        ]
        if parameters:
            entry["parameters"] = parameters
        if op.body is not None:
            entry["requestBody"] = {
                "required": not op.body_optional,
                "content": {"application/json": {"schema": ref[op.body]}},
            }
        statuses: dict[int, type[BaseModel] | str] = dict(op.responses)
        if not op.public:
            statuses.setdefault(401, Problem)
            statuses.setdefault(429, Problem)  # too many wrong credentials from the address
            statuses.setdefault(503, Problem)  # the store is unavailable: retry later
        if op.body is not None:
            for status in BODY_ERRORS:
                statuses.setdefault(status, Problem)
        for status, response in sorted(statuses.items()):
            if isinstance(response, str):
                kind = "object" if response == "application/json" else "string"
                content = {response: {"schema": {"type": kind}}}
            else:
                content = {"application/json": {"schema": ref[response]}}
            entry["responses"][str(status)] = {"description": _phrase(status), "content": content}
        if op.public:
            entry["security"] = []
        paths.setdefault(path, {})[method] = entry
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "autoheal",
            "version": VERSION,
            "description": "Self-healing webhook receiver for Alertmanager and job schedulers.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}, {"basic": []}],
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "basic": {"type": "http", "scheme": "basic"},
            },
        },
    }


def _phrase(status: int) -> str:
    from http import HTTPStatus

    return HTTPStatus(status).phrase


def enum_schema(values: Sequence[str]) -> dict[str, Any]:
    return {"type": "string", "enum": list(values)}


INCIDENT_QUERY = (
    Query("status", enum_schema([s.value for s in IncidentStatus]), "only this status"),
    Query("error_type", enum_schema([e.value for e in ErrorType]), "only this error type"),
    Query("limit", {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}),
    Query("offset", {"type": "integer", "minimum": 0, "maximum": 10**9, "default": 0}),
)
KNOWLEDGE_QUERY = (
    Query("error_type", enum_schema([e.value for e in ErrorType])),
    Query("playbook", {"type": "string"}),
    Query("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}),
)
