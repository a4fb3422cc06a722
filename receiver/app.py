"""The application factory.

Start-up order, in one place: database (migrate, sync playbooks), action clients (Docker, SSH,
HTTP), ingest writer, heal worker. Each is a cleanup context: create, yield, dispose.
"""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Callable, Mapping

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from receiver import appkeys, openapi
from receiver.actions import ACTIONS, Action
from receiver.alertmanager_api import AlertmanagerAPI
from receiver.api import error_middleware, routes
from receiver.auth import auth_middleware
from receiver.catalog import CatalogHolder, load_catalog
from receiver.config import Settings
from receiver.db.engine import open_database
from receiver.db.migrate import ensure_schema
from receiver.ingest import Ingestor
from receiver.jsoncodec import dumps
from receiver.lockout import Lockout
from receiver.metrics import build_metrics
from receiver.notify import NOTIFIERS, announcer, build_notifiers
from receiver.notify.alertmanager import Escalator
from receiver.notify.base import Notifier
from receiver.notify.sender import OutboxSender
from receiver.notify.telegram import TelegramNotifier
from receiver.openapi import documented
from receiver.prometheus_api import PrometheusAPI
from receiver.resources import DockerClients, Resources, SSHPool
from receiver.retention import Pruner
from receiver.taskwatch import TaskWatch
from receiver.ui import setup_ui
from receiver.worker import HealWorker

log = logging.getLogger(__name__)


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[appkeys.SETTINGS]
    db = open_database(settings.database_url)
    try:
        await ensure_schema(db, settings.database_url)
        catalog = await load_catalog(
            db, settings.playbooks, settings.param_scope(), app[appkeys.ACTIONS]
        )
        app[appkeys.DATABASE] = db
        app[appkeys.CATALOG] = CatalogHolder(catalog)
        app[appkeys.METRICS].loaded(catalog.playbooks)
        log.info("store ready (%s); %d playbooks", db.dialect, len(catalog.playbooks))
        yield
    finally:
        await db.dispose()


async def _clients(app: web.Application) -> AsyncIterator[None]:
    """Docker, SSH and HTTP clients for the actions; each connects on first use."""
    import aiohttp

    settings = app[appkeys.SETTINGS]
    resources = Resources(
        inventory=settings.inventory,
        docker=DockerClients(settings.inventory),
        ssh=SSHPool(settings.inventory),
        http=aiohttp.ClientSession(json_serialize=dumps),  # bodies as the store writes JSON
        http_allow=tuple(settings.http_allow),
        alertmanager=AlertmanagerAPI.of(settings),
        prometheus=PrometheusAPI.of(settings),
    )
    app[appkeys.RESOURCES] = resources
    telegram = None
    if settings.telegram_webhook_secret is not None and settings.telegram_token is not None:
        telegram = TelegramNotifier(
            settings.telegram_token.get_secret_value(),
            settings.telegram_chat_id or "",
            settings.telegram_base_url,
            settings.notify_timeout_seconds,
        )
        app[appkeys.TELEGRAM] = telegram
    try:
        yield
    finally:
        if telegram is not None:
            await telegram.close()
        await resources.ssh.close()
        await resources.docker.close()
        if resources.http is not None:
            await resources.http.close()
        if resources.alertmanager is not None:
            await resources.alertmanager.close()
        if resources.prometheus is not None:
            await resources.prometheus.close()


async def _worker(app: web.Application) -> AsyncIterator[None]:
    """Ingest writer, heal worker, outbox sender, Alertmanager escalator, pruner and task
    watch (all but the first on worker replicas only; the sender and escalator only when
    configured)."""
    settings = app[appkeys.SETTINGS]
    escalator = Escalator(settings, app[appkeys.DATABASE]) if settings.alertmanager_urls else None
    on_escalated = escalator.wake if escalator is not None else (lambda: None)
    worker = HealWorker(
        settings,
        app[appkeys.DATABASE],
        app[appkeys.CATALOG],
        app[appkeys.METRICS],
        resources=app[appkeys.RESOURCES],
        on_escalated=on_escalated,
        actions=app[appkeys.ACTIONS],
    )
    app[appkeys.WORKER] = worker
    ingestor = Ingestor(
        app[appkeys.DATABASE],
        app[appkeys.METRICS],
        app[appkeys.CATALOG],
        max_batch=settings.ingest_max_batch,
        on_commit=worker.wake,
        notify=announcer(settings),
        on_escalated=on_escalated,
    )
    app[appkeys.INGESTOR] = ingestor
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(ingestor.running())
        if settings.worker:
            await stack.enter_async_context(worker.running())
            if settings.channels:
                sender = OutboxSender(
                    app[appkeys.DATABASE],
                    build_notifiers(settings, app[appkeys.CHANNELS]),
                    app[appkeys.METRICS],
                    worker.owner,
                    batch_seconds=settings.notify_batch_seconds,
                    summary_after=settings.notify_summary_after,
                )
                app[appkeys.SENDER] = sender
                await stack.enter_async_context(sender.running())
            if escalator is not None:
                app[appkeys.ESCALATOR] = escalator
                await stack.enter_async_context(escalator.running())
            pruner = Pruner(settings, app[appkeys.DATABASE])
            app[appkeys.PRUNER] = pruner
            await stack.enter_async_context(pruner.running())
            watch = TaskWatch(
                app[appkeys.DATABASE],
                app[appkeys.CATALOG],
                ingestor.submit,
                app[appkeys.METRICS],
                every=settings.task_watch_seconds,
            )
            app[appkeys.TASKWATCH] = watch
            await stack.enter_async_context(watch.running())
        yield


@documented(
    summary="Prometheus metrics",
    public=True,
    responses={200: "text/plain"},
    tag="operations",
)
async def metrics_view(request: web.Request) -> web.Response:
    """Refresh the store-derived gauges, then render."""
    await request.app[appkeys.METRICS].store.refresh(request.app[appkeys.DATABASE])
    body = generate_latest(request.app[appkeys.REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _freeze_heap(_app: web.Application) -> None:
    """Move everything start-up built (modules, SQLAlchemy and pydantic schemas, the catalog)
    out of the collector's reach: a full collection then walks only what requests allocate,
    instead of ~90,000 long-lived objects (tens of milliseconds each time under load)."""
    gc.collect()
    gc.freeze()


def create_app(
    settings: Settings,
    *,
    actions: Mapping[str, Action] = ACTIONS,
    channels: Mapping[str, Callable[[Settings], Notifier]] = NOTIFIERS,
) -> web.Application:
    """Build the service from settings; nothing starts until the app runs. ``actions`` and
    ``channels``: the registries of action kinds and notification channels (the built-in
    ones unless given: a test or an embedding adds its own here)."""
    settings.check_exposure()
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[error_middleware, auth_middleware(settings)],
    )
    registry = CollectorRegistry()
    app[appkeys.SETTINGS] = settings
    app[appkeys.ACTIONS] = actions
    app[appkeys.CHANNELS] = channels
    app[appkeys.REGISTRY] = registry
    app[appkeys.METRICS] = build_metrics(registry)
    app[appkeys.LOCKOUT] = Lockout(settings, app[appkeys.METRICS])
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_clients)
    app.cleanup_ctx.append(_worker)
    app.on_startup.append(_freeze_heap)  # after the cleanup contexts have started
    app.add_routes(routes)
    app.router.add_get("/metrics", metrics_view)
    setup_ui(app, settings)
    app.on_startup.append(_document)
    return app


async def _document(app: web.Application) -> None:
    """Built once the routes are final (a route without a description fails start-up)."""
    app[appkeys.OPENAPI] = dumps(openapi.build(app)).encode()
