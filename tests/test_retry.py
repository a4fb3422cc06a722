"""The retry policy: transient transport failures retried (bounded), everything else not."""

from __future__ import annotations

import errno
import time

import pytest

from receiver.retry import TransientError, is_transient, with_retries


async def test_transient_failures_are_retried_then_succeed() -> None:
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionRefusedError(errno.ECONNREFUSED, "refused")
        return "ok"

    assert await with_retries(flaky, 10) == "ok"
    assert calls == 3


async def test_bounded_to_three_tries() -> None:
    calls = 0

    async def down() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionResetError(errno.ECONNRESET, "reset")

    with pytest.raises(ConnectionResetError):
        await with_retries(down, 10)
    assert calls == 3


async def test_never_past_the_deadline() -> None:
    async def down() -> None:
        raise TransientError("still down")

    started = time.monotonic()
    with pytest.raises(TransientError):
        await with_retries(down, 0.3)
    assert time.monotonic() - started < 2.5  # the deadline stops it; back-off is capped at 2 s


@pytest.mark.parametrize(
    "exc",
    [
        LookupError("404"),
        ValueError("bad"),
        PermissionError(errno.EACCES, "no"),
        FileNotFoundError(errno.ENOENT, "no socket"),
    ],
)
async def test_other_errors_are_not_retried(exc: Exception) -> None:
    calls = 0

    async def refuse() -> None:
        nonlocal calls
        calls += 1
        raise exc

    with pytest.raises(type(exc)):
        await with_retries(refuse, 10)
    assert not is_transient(exc)
    assert calls == 1


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError(errno.ECONNREFUSED, "x"),
        OSError(errno.EHOSTUNREACH, "x"),
        TimeoutError(),
        TransientError("x"),
    ],
)
def test_what_counts_as_transient(exc: Exception) -> None:
    assert is_transient(exc)
