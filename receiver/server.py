"""The HTTP server around the app: listen, read deadlines, stop on SIGTERM.

aiohttp's server has no deadline for reading a request: a client trickling its headers a byte
at a time holds a connection (and a file descriptor) as long as it likes, before any
credential is checked. ``DeadlineSite`` puts aiohttp's protocol behind a thin one that closes a
connection whose request head (request line and headers) is not complete within
``header_timeout`` of its first byte. Bodies get their deadline where they are read
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
    """Forwards everything to aiohttp's RequestHandler; closes the connection when a request
    head is still incomplete ``header_timeout`` seconds after its first byte."""

    def __init__(self, inner: RequestHandler, header_timeout: float) -> None:
        self._inner = inner
        self._timeout = header_timeout
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._in_head = False
        self._tail = b""  # the last bytes seen, for a head end split across reads

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._inner.connection_made(transport)
        self._start_head()  # a connection that sends nothing at all is held no longer

    def data_received(self, data: bytes) -> None:
        # aiohttp marks a request in progress from its parsed head until it is answered: bytes
        # arriving then are its body. (Unknown in another aiohttp: taken as in progress, so
        # at worst only a connection's first request has a deadline.)
        if not self._in_head and not getattr(self._inner, "_request_in_progress", True):
            self._start_head()  # a new request (keep-alive: after the last one was answered)
        if self._in_head:
            seen = self._tail + data
            if _HEAD_END in seen:
                self._in_head = False
                self._cancel()
            self._tail = seen[-3:]
        self._inner.data_received(data)

    def _start_head(self) -> None:
        self._cancel()
        self._in_head = True
        self._tail = b""
        self._timer = asyncio.get_running_loop().call_later(self._timeout, self._expire)

    def _expire(self) -> None:
        self._timer = None
        if self._in_head and self._transport is not None:
            log.warning("closed a connection: request head not complete in %ss", self._timeout)
            self._transport.abort()

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()  # type: ignore[func-returns-value]

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


class DeadlineSite(web.TCPSite):
    """A TCP site whose connections have a request-head deadline."""

    def __init__(self, runner: web.BaseRunner, *args: Any, header_timeout: float, **kw: Any):
        super().__init__(runner, *args, **kw)
        self._header_timeout = header_timeout

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        timeout = self._header_timeout
        self._server = await asyncio.get_running_loop().create_server(
            lambda: _Deadlines(server(), timeout),
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
        )


def runner_for(app: web.Application) -> web.AppRunner:
    # Alertmanager holds keep-alive connections open: a short shutdown_timeout lets us stop.
    return web.AppRunner(app, access_log=None, shutdown_timeout=5, lingering_time=LINGER_SECONDS)


async def serve(app: web.Application, settings: Settings) -> None:
    """Run until SIGTERM or SIGINT, then stop the app's parts in order."""
    runner = runner_for(app)
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
        await stop.wait()
        log.info("stopping")
    finally:
        await runner.cleanup()
