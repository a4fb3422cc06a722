"""Report a job's runs to autoheal from the scheduler that runs it.

Standard library only (urllib, json, threading): importing this module starts nothing and
imports nothing of the server. The calls never raise into the job. A report autoheal cannot
take now (unreachable, 5xx, 429, a wrong token) is spooled to a local file and sent before
the next one, in order, with the same idempotency id, so a resend is counted once::

    from receiver.client import watch

    @watch(task="run_auto_import_task")        # start and success pinged, exceptions reported
    def run_auto_import_task(): ...

    with watch(task="nightly_export"): ...      # or async with, or the functions below

Configured by ``AUTOHEAL_URL`` and ``AUTOHEAL_TOKEN`` (or ``AUTOHEAL_TOKEN_FILE``; the
server's ``AUTOHEAL_AUTH_TOKEN`` and ``_FILE`` are read too), ``AUTOHEAL_SPOOL`` (the spool
file) and ``AUTOHEAL_CLIENT_TIMEOUT`` (seconds, default 2).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import inspect
import json
import logging
import os
import tempfile
import threading
import traceback
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypeVar

try:
    import fcntl  # several processes (workers of one scheduler) share the spool
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("autoheal.client")

F = TypeVar("F", bound=Callable[..., Any])

EXCEPTIONS, SUCCESS, START = "/api/v1/exceptions", "/api/v1/success", "/api/v1/start"
MAX_MESSAGE = 65_536
MAX_TRACEBACK = 1_048_576
# A spool past this size takes no more reports (each one dropped is logged): autoheal has
# been away long enough that the spool is no longer what people need.
MAX_SPOOL_BYTES = 16 * 1024 * 1024
# Answers a resend cannot change: the report itself is wrong. Dropped, with an ERROR line.
_DROP = frozenset({400, 404, 405, 413, 415, 422})


class Client:
    """One autoheal endpoint, its credentials and a spool file. Thread-safe; the async
    methods run the same calls in a thread (no event loop is blocked)."""

    def __init__(
        self,
        url: str | None = None,
        *,
        token: str | None = None,
        basic_auth: str | None = None,
        spool: str | os.PathLike[str] | None = None,
        timeout: float = 2.0,
        severity: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        self.url = (url or "").rstrip("/")
        self.timeout = timeout
        self.severity = severity
        self.labels = dict(labels or {})
        self.spool = Path(spool) if spool else _default_spool()
        self._headers = {"Content-Type": "application/json", "User-Agent": "autoheal-client"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        elif basic_auth:
            self._headers["Authorization"] = "Basic " + base64.b64encode(
                basic_auth.encode()
            ).decode("ascii")
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **kw: Any) -> Client:
        env = os.environ if environ is None else environ
        token = _secret(env, "AUTOHEAL_TOKEN") or _secret(env, "AUTOHEAL_AUTH_TOKEN")
        timeout = float(env.get("AUTOHEAL_CLIENT_TIMEOUT") or 2.0)
        return cls(
            env.get("AUTOHEAL_URL"),
            token=token,
            spool=env.get("AUTOHEAL_SPOOL") or None,
            timeout=timeout,
            **kw,
        )

    # -- what a job reports --------------------------------------------------------------

    def report(
        self,
        exc: BaseException,
        task: str,
        *,
        run: str | None = None,
        severity: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> bool:
        """The exception, with its traceback, as an incident of ``task``. True when
        autoheal stored it now (False: spooled, dropped or not configured)."""
        try:
            body = exception_body(exc, task, run, severity or self.severity, self.labels, labels)
        except Exception:  # a str() that raises must not reach the job
            log.exception("autoheal: could not describe %s for task %s", type(exc), task)
            return False
        return self.send(EXCEPTIONS, body)

    def success(self, task: str, *, run: str | None = None) -> bool:
        """``task`` ran cleanly (its open incidents resolve; its run is finished)."""
        return self.send(SUCCESS, _ping(task, run))

    def start(self, task: str, *, run: str | None = None) -> bool:
        """``task`` started (a run that never finishes is noticed by its max_duration)."""
        return self.send(START, _ping(task, run))

    async def areport(self, exc: BaseException, task: str, **kw: Any) -> bool:
        return await asyncio.to_thread(self.report, exc, task, **kw)

    async def asuccess(self, task: str, *, run: str | None = None) -> bool:
        return await asyncio.to_thread(self.success, task, run=run)

    async def astart(self, task: str, *, run: str | None = None) -> bool:
        return await asyncio.to_thread(self.start, task, run=run)

    # -- delivery ------------------------------------------------------------------------

    def send(self, path: str, body: Mapping[str, Any]) -> bool:
        """Deliver what the spool holds, then this; whatever cannot go now is spooled
        behind it. Never raises."""
        if not self.url:
            log.warning("autoheal: AUTOHEAL_URL is not set; %s for %s not sent", path, body["task"])
            return False
        entry = {"path": path, "body": dict(body)}
        try:
            with self._lock, _locked(self.spool) as spool:
                if not self._drain(spool):
                    _append(spool, entry)
                    return False
                result = self._post(entry)
                if result == "retry":
                    _append(spool, entry)
                return result == "sent"
        except Exception:
            log.exception("autoheal: %s for task %s lost", path, body.get("task"))
            return False

    def flush(self) -> int:
        """Send what the spool holds (e.g. at the end of a batch job); how many are left."""
        if not self.url:
            return 0
        try:
            with self._lock, _locked(self.spool) as spool:
                self._drain(spool)
                return sum(1 for _ in _entries(spool))
        except Exception:
            log.exception("autoheal: the spool %s could not be sent", self.spool)
            return -1

    def _drain(self, spool: Any) -> bool:
        """Send the spooled entries in order, up to the first that must wait; True when
        none is left."""
        entries = list(_entries(spool))
        if not entries:
            return True
        sent = 0
        for entry in entries:
            if self._post(entry) == "retry":
                break
            sent += 1
        if sent:
            log.info("autoheal: %d spooled report(s) sent", sent)
            spool.seek(0)
            spool.truncate()
            for entry in entries[sent:]:
                spool.write(json.dumps(entry) + "\n")
            spool.flush()
        return sent == len(entries)

    def _post(self, entry: Mapping[str, Any]) -> str:
        """``sent``, ``dropped`` (a resend cannot help) or ``retry``."""
        data = json.dumps(entry["body"]).encode()
        request = urllib.request.Request(  # noqa: S310 - the configured http(s) URL
            self.url + entry["path"], data=data, headers=self._headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:  # noqa: S310
                answer.read()
            return "sent"
        except urllib.error.HTTPError as exc:
            if exc.code in _DROP:
                detail = exc.read(500).decode(errors="replace")
                log.error("autoheal refused %s (%s): %s", entry["path"], exc.code, detail)
                return "dropped"
            log.warning("autoheal answered %s to %s; spooled", exc.code, entry["path"])
            return "retry"
        except (OSError, ValueError) as exc:  # URLError, timeouts, resets, a bad URL
            log.warning("autoheal unreachable (%s); %s spooled", exc, entry["path"])
            return "retry"


def exception_body(
    exc: BaseException,
    task: str,
    run: str | None,
    severity: str | None,
    *label_sets: Mapping[str, str] | None,
) -> dict[str, Any]:
    kind = type(exc)
    name = kind.__qualname__
    if kind.__module__ != "builtins":
        name = f"{kind.__module__}.{name}"
    message = str(exc) or kind.__name__
    body: dict[str, Any] = {
        "id": uuid.uuid4().hex,
        "task": task,
        "message": message[:MAX_MESSAGE],
        "exception_type": name[:200],
        "traceback": "".join(traceback.format_exception(exc))[-MAX_TRACEBACK:],
        "occurred_at": datetime.now(UTC).isoformat(),
    }
    labels = {k: str(v) for s in label_sets if s for k, v in s.items()}
    if labels:
        body["labels"] = labels
    if severity:
        body["severity"] = severity
    if run:
        body["run"] = run
    return body


def _ping(task: str, run: str | None) -> dict[str, Any]:
    body = {"id": uuid.uuid4().hex, "task": task, "at": datetime.now(UTC).isoformat()}
    if run:
        body["run"] = run
    return body


def _secret(env: Mapping[str, str], name: str) -> str | None:
    if env.get(name):
        return env[name]
    path = env.get(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            log.error("autoheal: cannot read %s_FILE %s: %s", name, path, exc.strerror)
    return None


def _default_spool() -> Path:
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(tempfile.gettempdir()) / f"autoheal-spool-{uid}.jsonl"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[Any]:
    """The spool file, open and locked against the other processes that share it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    with os.fdopen(fd, "r+", encoding="utf-8") as spool:
        if fcntl is not None:
            fcntl.flock(spool, fcntl.LOCK_EX)
        try:
            yield spool
        finally:
            if fcntl is not None:
                fcntl.flock(spool, fcntl.LOCK_UN)


def _entries(spool: Any) -> Iterator[dict[str, Any]]:
    spool.seek(0)
    for line in spool:
        line = line.strip()
        if not line:
            continue
        try:
            yield json.loads(line)
        except ValueError:
            log.error("autoheal: an unreadable line in the spool was dropped")


def _append(spool: Any, entry: Mapping[str, Any]) -> None:
    spool.seek(0, os.SEEK_END)
    if spool.tell() > MAX_SPOOL_BYTES:
        log.error("autoheal: spool %s is full; %s dropped", spool.name, entry["path"])
        return
    spool.write(json.dumps(entry) + "\n")
    spool.flush()
    os.fsync(spool.fileno())


# -- the default client and the functions around a job ------------------------------------

_default: Client | None = None
_default_lock = threading.Lock()


def default_client() -> Client:
    """The client from the environment, made on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Client.from_env()
        return _default


def configure(client: Client | None) -> None:
    """Use ``client`` where none is passed (None: from the environment again)."""
    global _default
    with _default_lock:
        _default = client


def report(exc: BaseException, task: str, **kw: Any) -> bool:
    return default_client().report(exc, task, **kw)


def success(task: str, *, run: str | None = None) -> bool:
    return default_client().success(task, run=run)


def start(task: str, *, run: str | None = None) -> bool:
    return default_client().start(task, run=run)


class watch:  # lower case: used as a decorator and a context manager, named like one
    """Around one job: ping start, report an exception (re-raised) or ping success.

    ``@watch(task=...)`` on a sync or async function, ``with watch(task=...)``, or
    ``async with watch(task=...)``."""

    def __init__(
        self,
        task: str,
        *,
        client: Client | None = None,
        ping_start: bool = True,
        severity: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        self.task = task
        self.client = client
        self.ping_start = ping_start
        self.severity = severity
        self.labels = labels
        self.run: str | None = None

    def _client(self) -> Client:
        return self.client or default_client()

    def __call__(self, fn: F) -> F:
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                async with self._fresh():
                    return await fn(*args, **kwargs)

            return run_async  # type: ignore[return-value]

        @functools.wraps(fn)
        def run_sync(*args: Any, **kwargs: Any) -> Any:
            with self._fresh():
                return fn(*args, **kwargs)

        return run_sync  # type: ignore[return-value]

    def _fresh(self) -> watch:
        """A watch per call: one decorated function may run in several threads at once."""
        return watch(
            self.task,
            client=self.client,
            ping_start=self.ping_start,
            severity=self.severity,
            labels=self.labels,
        )

    def __enter__(self) -> watch:
        self.run = uuid.uuid4().hex
        if self.ping_start:
            self._client().start(self.task, run=self.run)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        client = self._client()
        if exc is None:
            client.success(self.task, run=self.run)
        elif isinstance(exc, Exception):  # not KeyboardInterrupt, SystemExit, cancellation
            client.report(exc, self.task, run=self.run, severity=self.severity, labels=self.labels)
        return False  # the exception goes on to the scheduler

    async def __aenter__(self) -> watch:
        # The same calls, in a thread: the event loop is never blocked on autoheal.
        return await asyncio.to_thread(self.__enter__)

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        return await asyncio.to_thread(self.__exit__, kind, exc, tb)


# -- schedulers ---------------------------------------------------------------------------


class MissedRun(Exception):
    """A scheduler skipped a run (APScheduler's misfire): reported as a MISSED_RUN."""


def apscheduler_listener(
    scheduler: Any,
    *,
    client: Client | None = None,
    task: Callable[[str], str] = str,
) -> Callable[[Any], None]:
    """Report an APScheduler 3 scheduler's jobs: a start when a run is submitted, success
    when it ran, the exception when it raised, a MISSED_RUN when it misfired. ``task`` maps
    a job id to the task name (the id by default). Sent from one background thread, in
    order: the listener runs in the scheduler's own thread (or event loop)."""
    from apscheduler.events import (
        EVENT_JOB_ERROR,
        EVENT_JOB_EXECUTED,
        EVENT_JOB_MISSED,
        EVENT_JOB_SUBMITTED,
    )

    sender = _Sender()

    def run_key(job_id: str, at: datetime) -> str:
        return f"{job_id}@{at.isoformat()}"

    def handle(event: Any) -> None:
        c = client or default_client()
        name = task(event.job_id)
        if event.code == EVENT_JOB_SUBMITTED:
            for at in event.scheduled_run_times:
                c.start(name, run=run_key(event.job_id, at))
            return
        run = run_key(event.job_id, event.scheduled_run_time)
        if event.code == EVENT_JOB_EXECUTED:
            c.success(name, run=run)
        elif event.code == EVENT_JOB_ERROR:
            c.report(event.exception, name, run=run)
        elif event.code == EVENT_JOB_MISSED:
            missed = MissedRun(f"run of {name} due at {event.scheduled_run_time} was missed")
            c.report(missed, name, labels={"error_type": "MISSED_RUN"})

    def listener(event: Any) -> None:
        sender.submit(handle, event)

    mask = EVENT_JOB_SUBMITTED | EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED
    scheduler.add_listener(listener, mask)
    return listener


def celery_handlers(*, client: Client | None = None, sender: Any = None) -> None:
    """Report Celery tasks (in the worker): a start before each run, success after it, the
    exception when it failed; the run is Celery's task id. ``sender``: only this task."""
    from celery import signals

    def started(task_id: str | None = None, task: Any = None, **_: Any) -> None:
        (client or default_client()).start(task.name, run=task_id)

    def succeeded(sender: Any = None, **_: Any) -> None:
        (client or default_client()).success(sender.name, run=sender.request.id)

    def failed(
        sender: Any = None, task_id: str | None = None, exception: Any = None, **_: Any
    ) -> None:
        (client or default_client()).report(exception, sender.name, run=task_id)

    signals.task_prerun.connect(started, sender=sender, weak=False)
    signals.task_success.connect(succeeded, sender=sender, weak=False)
    signals.task_failure.connect(failed, sender=sender, weak=False)


class _Sender:
    """One daemon thread sending in the order given; joined at interpreter exit, so what
    was handed to it is sent (or spooled) before the process ends."""

    def __init__(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="autoheal-client")

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        def run() -> None:
            try:
                fn(*args)
            except Exception:
                log.exception("autoheal: a scheduler event could not be reported")

        try:
            self._pool.submit(run)
        except RuntimeError:  # the interpreter is shutting down: send it here
            run()
