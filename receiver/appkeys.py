"""Typed application state keys, all in one place."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CollectorRegistry

from receiver.catalog import CatalogHolder
from receiver.config import Settings
from receiver.db.engine import Database
from receiver.ingest import Ingestor
from receiver.metrics import Metrics
from receiver.notify.alertmanager import Escalator
from receiver.notify.sender import OutboxSender
from receiver.notify.telegram import TelegramNotifier
from receiver.resources import Resources
from receiver.retention import Pruner
from receiver.worker import HealWorker

SETTINGS = web.AppKey("settings", Settings)
REGISTRY = web.AppKey("registry", CollectorRegistry)
METRICS = web.AppKey("metrics", Metrics)
DATABASE = web.AppKey("database", Database)
CATALOG = web.AppKey("catalog", CatalogHolder)
INGESTOR = web.AppKey("ingestor", Ingestor)
WORKER = web.AppKey("worker", HealWorker)
RESOURCES = web.AppKey("resources", Resources)
SENDER = web.AppKey("sender", OutboxSender)
ESCALATOR = web.AppKey("escalator", Escalator)
PRUNER = web.AppKey("pruner", Pruner)
TELEGRAM = web.AppKey("telegram", TelegramNotifier)  # answers approval button presses
OPENAPI = web.AppKey("openapi", bytes)  # the document, built once at start-up
