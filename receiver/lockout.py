"""Failed logins: too many from one client address within a window refuse that address
(HTTP 429 with Retry-After) until the oldest of them ages out, as Grafana's brute-force
login protection does. The page's login form and API requests share the count.

A bearer token from ``openssl rand`` cannot be guessed this way, but a basic-auth password
a person chose can, through the page or the API; this bounds the guesses to
``login_max_failures`` per window per address.

The failures are kept in the store, so every replica and a restart see them. The page's
login form reads the count before it checks a password; an API request reads only what
this replica remembers of addresses it locked out (no store read on the hot path), so with
N replicas an address gets at most ``login_max_failures + N - 1`` guesses per window.
Only requests that carry an ``Authorization`` header count: a missing one guesses nothing.
Loopback is exempt by default (``login_exempt``, as fail2ban's ignoreip): on one host every
sender comes from 127.0.0.1, and a scheduler with a stale token must not lock Alertmanager
out; such failures are still logged and counted.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from datetime import UTC, datetime, timedelta

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from receiver.config import Settings
from receiver.db import repo
from receiver.db.engine import Database
from receiver.metrics import Metrics

log = logging.getLogger(__name__)

UI = "ui"
API = "api"
_REMEMBERED = 10_000  # locked-out addresses kept in memory before expired ones are swept


class Lockout:
    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.max_failures = settings.login_max_failures
        self.window = settings.login_failure_window_seconds
        self.proxies = settings.proxy_networks
        self.exempt = settings.login_exempt_networks
        self.metrics = metrics
        self._until: dict[str, float] = {}  # address -> monotonic time its lockout ends
        self._warned = False  # about a proxy in front while trusted_proxies is unset

    @property
    def on(self) -> bool:
        return self.max_failures > 0

    def address(self, request: web.Request) -> str:
        """The client's address: the peer's, or, when the peer is a trusted proxy, the
        nearest address in X-Forwarded-For that is not one (a client can put anything at
        the left of that header, so it is read from the right)."""
        peer = request.remote or "unknown"
        if not self.proxies:
            if not self._warned and "X-Forwarded-For" in request.headers:
                self._warned = True
                log.warning(
                    "requests come through a proxy (X-Forwarded-For from %s) but "
                    "trusted_proxies is unset: failed logins are counted against the proxy's "
                    "address (and not at all if it is exempt, as loopback is by default)",
                    peer,
                )
            return _client(peer)
        if not self._trusted(peer):
            return _client(peer)
        forwarded = ",".join(request.headers.getall("X-Forwarded-For", []))
        for hop in reversed([h.strip() for h in forwarded.split(",") if h.strip()]):
            if not self._trusted(hop):
                return _client(hop)
        return _client(peer)

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.proxies)

    def counts(self, address: str) -> bool:
        """Whether failures from this address (as ``address`` keys it) lock it out."""
        if not self.on:
            return False
        try:
            network = ipaddress.ip_network(address, strict=False)
        except ValueError:
            return True
        return not any(
            network.version == ex.version and network.subnet_of(ex)  # type: ignore[arg-type]
            for ex in self.exempt
        )

    def refusing(self, request: web.Request, via: str) -> int | None:
        """``held`` for a request's address. Every API request asks, so while this replica
        has locked nobody out (nearly always) no address is worked out at all."""
        if not self._until:
            return None
        return self.held(self.address(request), via)

    def held(self, address: str, via: str) -> int | None:
        """Seconds left of this address's lockout as this replica knows it, else None."""
        if not self.on:
            return None
        until = self._until.get(address)
        if until is None:
            return None
        left = until - time.monotonic()
        if left <= 0:
            del self._until[address]
            return None
        self.metrics.login_refused.labels(via).inc()
        return max(1, math.ceil(left))

    async def check(self, db: Database, address: str, via: str) -> int | None:
        """Seconds left of this address's lockout, from the store (every replica's
        failures); for the login form, before a password is checked."""
        if not self.counts(address):
            return None
        held = self.held(address, via)
        if held is not None:
            return held
        now = datetime.now(UTC)
        try:
            async with db.reading() as conn:
                times = await repo.logins.recent(conn, address, self._since(now))
        except (SQLAlchemyError, OSError) as exc:
            log.warning("login failures not read (%s): not throttled", type(exc).__name__)
            return None
        left = self._lock(address, times, now)
        if left is not None:
            self.metrics.login_refused.labels(via).inc()
        return left

    async def failed(self, db: Database, address: str, via: str) -> int | None:
        """Count a credential that did not match. Seconds this address is now locked out
        for, if this failure reached the limit."""
        self.metrics.login_failures.labels(via).inc()
        if not self.counts(address):
            log.warning("credential refused (%s) from %s (not locked out)", via, address)
            return None
        now = datetime.now(UTC)
        try:
            async with db.transaction() as conn:
                times = await repo.logins.record(conn, address, via, now, self._since(now))
        except (SQLAlchemyError, OSError) as exc:
            log.warning(
                "credential refused (%s) from %s; not counted, store error %s",
                via,
                address,
                type(exc).__name__,
            )
            return None
        left, count = self._lock(address, times, now), len(times)
        if left is None:
            log.warning(
                "credential refused (%s) from %s: %d of %d failures allowed in %g s",
                via,
                address,
                count,
                self.max_failures,
                self.window,
            )
        else:
            log.warning(
                "credential refused (%s) from %s: %d failures in %g s; "
                "the address is refused for %d s",
                via,
                address,
                count,
                self.window,
                left,
            )
        return left

    def _since(self, now: datetime) -> datetime:
        return now - timedelta(seconds=self.window)

    def _lock(self, address: str, times: list[datetime], now: datetime) -> int | None:
        """Locked out while the window holds the limit's worth of failures: until enough of
        the oldest have aged out to leave one short of it."""
        if len(times) < self.max_failures:
            return None
        freeing = times[len(times) - self.max_failures]
        left = (freeing - now).total_seconds() + self.window
        if left <= 0:
            return None
        if len(self._until) >= _REMEMBERED:
            clock = time.monotonic()
            self._until = {a: u for a, u in self._until.items() if u > clock}
        self._until[address] = time.monotonic() + left
        return max(1, math.ceil(left))


def _client(address: str) -> str:
    """The key an address is counted under: an IPv6 client by its /64 (one host is given a
    whole /64 and can take any address in it), anything unparsable as it came, bounded."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        if ip.is_loopback:
            return str(ip)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)
