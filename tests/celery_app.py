"""A Celery app for tests/test_schedulers.py, run by a real worker process on the Redis this
machine runs: its tasks report to autoheal through receiver.client's signal handlers."""

from __future__ import annotations

import os

from celery import Celery

from receiver.client import celery_handlers

app = Celery("autoheal_tests", broker=os.environ.get("CELERY_BROKER", "redis://127.0.0.1:6379/0"))
app.conf.update(
    task_default_queue=os.environ.get("CELERY_QUEUE", "autoheal-tests"),
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)
celery_handlers()  # the one line a Celery project adds


@app.task(name="run_analysis_task")
def run_analysis_task() -> None:
    raise ConnectionError(
        'connection to server at "10.0.0.5", port 5432 failed: Connection refused'
    )


@app.task(name="run_weekly_strategy")
def run_weekly_strategy() -> str:
    return "ok"
