"""Typed application state keys, all in one place."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from aiohttp import web
from prometheus_client import CollectorRegistry

from receiver.actions import Action
from receiver.catalog import CatalogHolder
from receiver.config import Settings
from receiver.db.engine import Database
from receiver.ingest import Ingestor
from receiver.lockout import Lockout
from receiver.metrics import Metrics
from receiver.notify.alertmanager import Escalator
from receiver.notify.base import Notifier
from receiver.notify.sender import OutboxSender
from receiver.notify.telegram import TelegramNotifier
from receiver.resources import Resources
from receiver.retention import Pruner
from receiver.taskwatch import TaskWatch
from receiver.worker import HealWorker

SETTINGS = web.AppKey("settings", Settings)
ACTIONS = web.AppKey("actions", Mapping[str, Action])  # the kinds playbooks may name
CHANNELS = web.AppKey("channels", Mapping[str, Callable[[Settings], Notifier]])
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
TASKWATCH = web.AppKey("taskwatch", TaskWatch)  # declared tasks: missed and overrunning runs
TELEGRAM = web.AppKey("telegram", TelegramNotifier)  # answers approval button presses
LOCKOUT = web.AppKey("lockout", Lockout)  # failed logins: addresses refused for a while
OPENAPI = web.AppKey("openapi", bytes)  # the document, built once at start-up
