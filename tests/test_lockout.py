"""Failed logins: an address with too many wrong credentials (the page's form or the API's
Authorization header, counted together, across replicas) is refused with 429 and a
Retry-After until the oldest failure ages out; even the right password is refused then."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import make_mocked_request
from sqlalchemy import func, select

from receiver.config import load_settings
from receiver.db.schema import login_failures
from receiver.errors import ConfigError
from receiver.lockout import Lockout
from receiver.metrics import build_metrics
from tests.conftest import TOKEN, until
from tests.test_ui import csrf_of

PASSWORD = "a-weak-password"


async def ui_login(svc: Any, password: str, *, forwarded: str | None = None) -> Any:
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    page = await svc.client.get("/ui/login", headers=headers)
    return await svc.client.post(
        "/ui/login",
        data={"user": "ana", "password": password, "csrf": csrf_of(await page.text())},
        headers=headers,
        allow_redirects=False,
    )


def api(svc: Any, token: str | None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return svc.client.get("/api/v1/incidents", headers=headers)


async def failures_stored(svc: Any) -> int:
    async with svc.db.reading() as conn:
        return int(await conn.scalar(select(func.count()).select_from(login_failures)) or 0)


async def test_the_page_refuses_an_address_after_its_failures_until_they_age_out(
    make_service: Any, caplog: pytest.LogCaptureFixture
) -> None:
    svc = await make_service(
        basic_auth=f"ana:{PASSWORD}",
        login_max_failures=3,
        login_failure_window_seconds=1.5,
        login_exempt="",
    )
    caplog.set_level(logging.WARNING, logger="receiver.lockout")
    assert (await ui_login(svc, "guess-1")).status == 401
    assert (await ui_login(svc, "guess-2")).status == 401
    third = await ui_login(svc, "guess-3")
    assert third.status == 429
    assert 1 <= int(third.headers["Retry-After"]) <= 2
    assert "Too many failed logins" in await third.text()
    # The right password is refused too while the address is locked out, and so is the API
    # from the same address, with the right token: the page and the API share the count.
    right = await ui_login(svc, PASSWORD)
    assert right.status == 429 and "autoheal_session" not in right.cookies
    assert (await api(svc, TOKEN)).status == 429
    assert svc.sample("autoheal_login_failures_total", {"via": "ui"}) == 3
    assert svc.sample("autoheal_login_refused_total", {"via": "ui"}) == 1
    assert svc.sample("autoheal_login_refused_total", {"via": "api"}) == 1

    async def let_in() -> bool:
        return (await ui_login(svc, PASSWORD)).status == 303

    caplog.set_level(logging.INFO, logger="receiver.ui.views")
    await until(let_in, 4, "the right password once the failures aged out")
    assert "page login: ana from 127.0.0.1" in caplog.text
    assert (await api(svc, TOKEN)).status == 200
    # What was logged names the address and the count, never what was typed.
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "credential refused (ui) from 127.0.0.1: 1 of 3" in text
    assert "the address is refused for" in text
    assert "guess-" not in text and PASSWORD not in text
    # The store keeps no more than the window's worth: the next failure forgets the old.
    assert (await ui_login(svc, "guess-4")).status == 401
    assert await failures_stored(svc) == 1


async def test_the_api_counts_wrong_credentials_not_missing_ones(make_service: Any) -> None:
    svc = await make_service(login_max_failures=3, login_exempt="")
    for _ in range(10):  # no credential guesses nothing: a probe is not locked out
        assert (await api(svc, None)).status == 401
    assert (await api(svc, TOKEN)).status == 200
    assert (await api(svc, "wrong-1")).status == 401
    assert (await api(svc, "wrong-2")).status == 401
    locked = await api(svc, "wrong-3")
    assert locked.status == 429 and int(locked.headers["Retry-After"]) > 200
    body = await locked.json()
    assert body["error"] == "too_many_failed_logins"
    # The webhook is refused as well, before its credential is looked at; nothing stored.
    refused = await svc.client.post(
        "/api/v1/alerts", json={}, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert refused.status == 429
    assert svc.sample("autoheal_login_failures_total", {"via": "api"}) == 3
    # Open paths stay open: probes and scrapes are not logins.
    assert (await svc.client.get("/healthz")).status == 200
    assert (await svc.client.get("/metrics")).status == 200


async def test_replicas_count_failures_together(make_service: Any) -> None:
    one = await make_service(basic_auth=f"ana:{PASSWORD}", login_max_failures=3, login_exempt="")
    two = await make_service(basic_auth=f"ana:{PASSWORD}", login_max_failures=3, login_exempt="")
    assert (await ui_login(one, "guess-1")).status == 401
    assert (await api(two, "wrong")).status == 401
    assert (await ui_login(one, "guess-2")).status == 429  # the third, across both
    # The other replica's login form reads the store before the password: refused there
    # too, though it locked nobody out itself.
    assert (await ui_login(two, PASSWORD)).status == 429


async def test_behind_a_trusted_proxy_each_client_is_counted_apart(make_service: Any) -> None:
    svc = await make_service(
        basic_auth=f"ana:{PASSWORD}", login_max_failures=2, trusted_proxies="127.0.0.0/8"
    )
    # The proxy appends the address it saw; what a client wrote to the left is not believed.
    guesser = "1.2.3.4, 203.0.113.5"
    assert (await ui_login(svc, "guess-1", forwarded=guesser)).status == 401
    assert (await ui_login(svc, "guess-2", forwarded="9.9.9.9, 203.0.113.5")).status == 429
    assert (await ui_login(svc, PASSWORD, forwarded="203.0.113.5")).status == 429
    # Another client behind the same proxy is not locked out with the guesser.
    assert (await ui_login(svc, PASSWORD, forwarded="198.51.100.7")).status == 303


async def test_off_when_the_limit_is_zero(make_service: Any) -> None:
    svc = await make_service(basic_auth=f"ana:{PASSWORD}", login_max_failures=0, login_exempt="")
    for i in range(8):
        assert (await ui_login(svc, f"guess-{i}")).status == 401
    assert (await ui_login(svc, PASSWORD)).status == 303
    assert await failures_stored(svc) == 0


async def test_loopback_is_not_locked_out_by_default(
    make_service: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """On one host every sender is 127.0.0.1: a scheduler with a stale token must not lock
    Alertmanager out. Its failures are still logged and counted (and alerted on)."""
    svc = await make_service()
    caplog.set_level(logging.WARNING, logger="receiver.lockout")
    for _ in range(8):
        assert (await api(svc, "stale-token")).status == 401
    assert (await api(svc, TOKEN)).status == 200
    assert svc.sample("autoheal_login_failures_total", {"via": "api"}) == 8
    assert await failures_stored(svc) == 0
    assert "credential refused (api) from 127.0.0.1 (not locked out)" in caplog.text
    # A proxy in front that nobody named: every client would look like it. Said once.
    for _ in range(2):
        forwarded = {"Authorization": "Bearer x", "X-Forwarded-For": "203.0.113.5"}
        assert (await svc.client.get("/api/v1/incidents", headers=forwarded)).status == 401
    assert caplog.text.count("trusted_proxies is unset") == 1


def _lockout(**settings: Any) -> Lockout:
    from prometheus_client import CollectorRegistry

    return Lockout(load_settings(None, **settings), build_metrics(CollectorRegistry()))


@pytest.mark.parametrize(
    ("peer", "forwarded", "counted"),
    [
        ("10.0.0.9", None, "10.0.0.9"),
        ("10.0.0.9", "203.0.113.5", "10.0.0.9"),  # not a trusted proxy: header ignored
        ("127.0.0.1", "203.0.113.5", "203.0.113.5"),
        ("127.0.0.1", "6.6.6.6, 203.0.113.5, 127.0.0.2", "203.0.113.5"),
        ("127.0.0.1", None, "127.0.0.1"),
        ("127.0.0.1", "127.0.0.5", "127.0.0.1"),  # only proxies: the peer
        ("2001:db8::1", None, "2001:db8::/64"),  # a host holds a whole /64
        ("2001:db8::ffff:1", None, "2001:db8::/64"),
        ("::ffff:192.0.2.1", None, "192.0.2.1"),
        ("::1", None, "::1"),  # loopback stays itself (exempt by default)
    ],
)
def test_the_address_counted(peer: str, forwarded: str | None, counted: str) -> None:
    lockout = _lockout(trusted_proxies="127.0.0.0/8, ::1")
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    request = make_mocked_request("GET", "/ui/login", headers=headers).clone(remote=peer)
    assert lockout.address(request) == counted


def test_trusted_proxies_must_be_addresses() -> None:
    with pytest.raises(ConfigError, match="trusted_proxies"):
        load_settings(None, trusted_proxies="10.0.0.0/8, proxy.internal")
    with pytest.raises(ConfigError, match="login_exempt"):
        load_settings(None, login_exempt="localhost")


@pytest.mark.parametrize(
    ("address", "counts"),
    [
        ("127.0.0.1", False),
        ("127.9.9.9", False),
        ("::1", False),
        ("10.0.0.9", False),
        ("10.1.0.9", True),
        ("203.0.113.5", True),
        ("2001:db8::/64", True),
        ("fd00:1::/64", False),  # a /64 key within an exempt /48
        ("unknown", True),
    ],
)
def test_which_addresses_count(address: str, counts: bool) -> None:
    lockout = _lockout(login_exempt="127.0.0.0/8, ::1, 10.0.0.0/16, fd00:1::/48")
    assert lockout.counts(address) is counts


async def test_a_lockout_is_remembered_only_for_its_time() -> None:
    lockout = _lockout(login_max_failures=2, login_failure_window_seconds=0.3)
    now = datetime.now(UTC)
    assert lockout._lock("a", [now], now) is None
    assert lockout._lock("a", [now, now], now) == 1
    assert lockout.held("a", "ui") == 1
    await asyncio.sleep(0.35)
    assert lockout.held("a", "ui") is None
    # With more failures than the limit (replicas each let one in), the lockout lasts
    # until enough have aged out to leave one short of it, not just the oldest.
    older = [now - timedelta(seconds=0.29), now - timedelta(seconds=0.1), now]
    assert lockout._lock("b", older, now) == 1
    assert 0.15 < lockout._until["b"] - time.monotonic() <= 0.2  # the second one's age-out
