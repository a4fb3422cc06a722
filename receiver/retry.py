"""The one retry policy for transient transport failures inside an action.

Bounded tries (3), exponential back-off with full jitter (up to 0.2 s, doubling, 2 s at
most), never past the action's own deadline. Refusals, 4xx and not-found are not transient
and are not retried.
"""

from __future__ import annotations

import asyncio
import errno
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


class TransientError(Exception):
    """A failure worth one more try: connection refused/reset, a timeout on the wire."""


_TRANSIENT_ERRNOS = frozenset(
    {
        errno.ECONNREFUSED,
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.EPIPE,
        errno.ETIMEDOUT,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
    }
)


def is_transient(exc: BaseException) -> bool:
    """Connection refused/reset/aborted, unreachable, timeouts: worth another try."""
    if isinstance(exc, TransientError | ConnectionError | asyncio.TimeoutError):
        return True
    ssh = sys.modules.get("asyncssh")
    if ssh is not None and isinstance(exc, ssh.ConnectionLost):
        return True
    return isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNOS


async def with_retries(call: Callable[[], Awaitable[T]], within: float) -> T:
    """Run ``call`` again on transient failures, within ``within`` seconds overall."""
    # Most calls succeed at once: they pay nothing for the retry machinery (under an alert
    # storm, tenacity's bookkeeping cost a fifth as much as the HTTP call it wrapped).
    try:
        return await call()
    except Exception as exc:
        if not is_transient(exc):
            raise
        failed: BaseException | None = exc
    # Imported on first use: only actions whose first try failed need it (saves resident
    # memory in a service that may never retry).
    from tenacity import (
        AsyncRetrying,
        retry_if_exception,
        stop_after_attempt,
        stop_after_delay,
        wait_random_exponential,
    )

    retrying = AsyncRetrying(
        stop=stop_after_attempt(3) | stop_after_delay(max(within * 0.8, 0.1)),
        wait=wait_random_exponential(multiplier=0.2, max=2.0),
        retry=retry_if_exception(is_transient),
        reraise=True,
    )

    async def attempt() -> T:
        # The try above is the policy's first: replay its failure, so the policy's wait and
        # bounds apply to the tries that follow exactly as if tenacity had made it.
        nonlocal failed
        if failed is not None:
            exc, failed = failed, None
            raise exc
        return await call()

    result: T = await retrying(attempt)
    return result
