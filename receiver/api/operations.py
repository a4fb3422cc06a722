"""Operations: playbooks and what was learned, reload, health, readiness, the OpenAPI
document."""

from __future__ import annotations

import logging

from aiohttp import web
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from receiver import appkeys, openapi
from receiver.api.http import int_param, json_response, problem
from receiver.catalog import Catalog, load_catalog
from receiver.db import repo
from receiver.db.migrate import HEAD_REVISION, current_revision
from receiver.domain import ErrorType
from receiver.openapi import documented

log = logging.getLogger(__name__)
routes = web.RouteTableDef()


@routes.get("/api/v1/playbooks")
@documented(
    summary="Playbooks with their counts",
    responses={200: openapi.Items, 503: openapi.Problem},
)
async def list_playbooks(request: web.Request) -> web.Response:
    async with request.app[appkeys.DATABASE].reading() as conn:
        rows = await repo.list_playbooks(conn)
    return json_response({"items": rows})


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
        raise problem(400, "bad_parameter", f"unknown error_type {error_type!r}")
    limit = int_param(request, "limit", 100, 1, 1000)
    async with request.app[appkeys.DATABASE].reading() as conn:
        items = await repo.knowledge.list_knowledge(
            conn, error_type=error_type, playbook=request.query.get("playbook"), limit=limit
        )
    return json_response({"items": items})


@routes.post("/-/reload")
@documented(
    summary="Re-read playbooks and classifier rules",
    responses={200: openapi.Reloaded, 422: openapi.Problem, 503: openapi.Problem},
    tag="operations",
)
async def reload(request: web.Request) -> web.Response:
    """Re-read playbooks, classifier rules and declared tasks; a bad file leaves the running
    set in place (as SIGHUP does)."""
    catalog = await reload_catalog(request.app)
    return json_response({"status": "reloaded", "playbooks": len(catalog.playbooks)})


async def reload_catalog(app: web.Application) -> Catalog:
    """Load the files again and swap the catalog whole; PlaybookError leaves it as it is."""
    settings = app[appkeys.SETTINGS]
    catalog = await load_catalog(
        app[appkeys.DATABASE], settings.playbooks, settings.param_scope(), app[appkeys.ACTIONS]
    )
    app[appkeys.CATALOG].current = catalog
    app[appkeys.METRICS].loaded(catalog.playbooks)
    log.info(
        "reloaded: %d playbooks, %d declared tasks", len(catalog.playbooks), len(catalog.tasks)
    )
    return catalog


@routes.get("/healthz")
@documented(summary="Liveness", public=True, responses={200: openapi.Health}, tag="operations")
async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


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
        return json_response({"status": "unavailable", "detail": type(exc).__name__}, 503)
    if revision != HEAD_REVISION:
        return json_response(
            {"status": "migrating", "revision": revision, "head": HEAD_REVISION}, 503
        )
    if db.health.refusing is not None:
        # The last write failed (a full disk, an I/O error) while reads still work: ready
        # again only once a write goes through. Probed here, so a replica taken out of
        # rotation (no traffic, no writes) still comes back.
        try:
            await db.run_in_transaction(repo.write_probe)
        except (SQLAlchemyError, OSError):
            detail = f"the store refuses writes ({db.health.refusing})"
            return json_response({"status": "unavailable", "detail": detail}, 503)
    return json_response({"status": "ready", "revision": revision})


@routes.get(openapi.PATH)
@documented(
    summary="This document (OpenAPI 3.1)",
    public=True,
    responses={200: "application/json"},
    tag="operations",
)
async def openapi_document(request: web.Request) -> web.Response:
    return web.Response(body=request.app[appkeys.OPENAPI], content_type="application/json")
