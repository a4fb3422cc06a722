"""The HTTP server around the app: listen, read deadlines, stop on SIGTERM, reload on SIGHUP.

aiohttp's server has no deadline for reading a request: a client trickling its headers a byte
at a time holds a connection (and a file descriptor) as long as it likes, before any
credential is checked. ``DeadlineSite`` puts aiohttp's protocol behind a thin one that notes
when each request head (request line and headers) starts: at the connection's opening, then at
the first byte after each answer; a sweep closes a connection whose head is not complete
``header_timeout`` later. Bodies get their deadline where they are read
(``api._parse``: 408), after the credentials were checked, and a body nobody reads is
discarded for at most ``LINGER_SECONDS``.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from receiver.config import Settings

log = logging.getLogger(__name__)

# aiohttp reads and drops an unread body for this long after answering (its default: 10 s).
LINGER_SECONDS = 1.0
_HEAD_END = b"\r\n\r\n"


class _Deadlines(asyncio.Protocol):
    """Forwards everything to aiohttp's RequestHandler and notes when the current request
    head started (None: no head being read). ``DeadlineSite``'s sweep closes the connection
    when that is too long ago: a timestamp per request instead of a timer per request."""

    __slots__ = ("_heads", "_inner", "_tail", "_transport", "head_since")

    def __init__(self, inner: RequestHandler, heads: set[_Deadlines]) -> None:
        self._inner = inner
        self._heads = heads  # the site's open connections, for its sweep
        self._transport: asyncio.Transport | None = None
        self.head_since: float | None = None
        self._tail = b""  # the last bytes seen, for a head end split across reads

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._heads.add(self)
        self._inner.connection_made(transport)
        self._start_head()  # a connection that sends nothing at all is held no longer

    def data_received(self, data: bytes) -> None:
        # aiohttp marks a request in progress from its parsed head until it is answered: bytes
        # arriving then are its body. (Unknown in another aiohttp: taken as in progress, so
        # at worst only a connection's first request has a deadline.)
        if self.head_since is None and not getattr(self._inner, "_request_in_progress", True):
            self._start_head()  # a new request (keep-alive: after the last one was answered)
        if self.head_since is not None:
            if _HEAD_END in data or _HEAD_END in self._tail + data[:3]:
                self.head_since = None
            else:
                self._tail = data[-3:]
        self._inner.data_received(data)

    def _start_head(self) -> None:
        self.head_since = asyncio.get_running_loop().time()
        self._tail = b""

    def expire(self, timeout: float) -> None:
        if self._transport is not None:
            log.warning("closed a connection: request head not complete in %ss", timeout)
            self._transport.abort()

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()  # type: ignore[func-returns-value]

    def connection_lost(self, exc: Exception | None) -> None:
        self._heads.discard(self)
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


class DeadlineSite(web.TCPSite):
    """A TCP site whose connections have a request-head deadline, enforced by one sweep
    every tenth of the deadline (so a head may take up to 1.1 times it)."""

    def __init__(self, runner: web.BaseRunner, *args: Any, header_timeout: float, **kw: Any):
        super().__init__(runner, *args, **kw)
        self._header_timeout = header_timeout
        self._open: set[_Deadlines] = set()
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            lambda: _Deadlines(server(), self._open),
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
        )
        self._sweeper = asyncio.create_task(self._sweep(), name="autoheal-head-deadlines")

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        await super().stop()

    async def _sweep(self) -> None:
        timeout = self._header_timeout
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(timeout / 10)
            late = loop.time() - timeout
            for conn in [c for c in self._open if c.head_since is not None and c.head_since < late]:
                conn.expire(timeout)


async def _reload(app: web.Application) -> None:
    from receiver.api.operations import reload_catalog
    from receiver.errors import PlaybookError

    try:
        await reload_catalog(app)
    except PlaybookError as exc:
        log.error("SIGHUP: reload refused, the running playbooks and tasks stay: %s", exc)
    except Exception:
        log.exception("SIGHUP: reload failed, the running playbooks and tasks stay")


async def serve(app: web.Application, settings: Settings) -> None:
    """Run until SIGTERM or SIGINT, then stop the app's parts in order; SIGHUP reloads the
    playbooks, classifier rules and declared tasks."""
    # Alertmanager holds keep-alive connections open: a short shutdown_timeout lets us stop.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=5, lingering_time=LINGER_SECONDS)
    await runner.setup()
    try:
        site = DeadlineSite(
            runner, settings.host, settings.port, header_timeout=settings.header_timeout_seconds
        )
        await site.start()
        log.info("listening on %s", settings.listen)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        reloads: set[asyncio.Task[None]] = set()

        def hup() -> None:  # re-read the files, as POST /-/reload does
            task = asyncio.create_task(_reload(app))
            reloads.add(task)
            task.add_done_callback(reloads.discard)

        loop.add_signal_handler(signal.SIGHUP, hup)
        await stop.wait()
        log.info("stopping")
    finally:
        await runner.cleanup()
