"""Shared steps of the container actions: through the Engine API, or over SSH when the host
has no API endpoint; then confirm a fresh start and, with a healthcheck, wait for healthy."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from receiver.actions.base import ActionContext, ActionOutcome
from receiver.actions.ssh import run_allowed
from receiver.retry import TransientError, with_retries

# aiodocker reports transport failures (refused socket, reset) as status 900.
_TRANSPORT = 900


async def container_action(
    ctx: ActionContext,
    host: str,
    name: str,
    verb: str,
    act: Callable[[Any], Awaitable[Any]],
    ssh_command: str,
    healthy_timeout: float,
) -> ActionOutcome:
    """Act on a container and confirm it runs with a newer StartedAt (healthy, if it checks)."""
    resources = ctx.need()
    if not resources.docker.has_api(host):
        return await run_allowed(ctx, host, ssh_command, {"container": name})
    from aiodocker.exceptions import DockerError

    docker = resources.docker.get(host)
    deadline = time.monotonic() + ctx.timeout

    async def inspect() -> Any:
        try:
            return await docker.containers.get(name)
        except DockerError as exc:
            if exc.status == _TRANSPORT:
                raise TransientError(exc.message) from exc
            raise

    try:
        before = await with_retries(inspect, ctx.timeout)
        started_before = before["State"].get("StartedAt", "")

        async def do() -> None:
            try:
                await act(before)
            except DockerError as exc:
                if exc.status == _TRANSPORT:
                    raise TransientError(exc.message) from exc
                raise

        await with_retries(do, max(deadline - time.monotonic(), 0.1))
        after = await with_retries(inspect, max(deadline - time.monotonic(), 0.1))
    except DockerError as exc:
        if exc.status == 404:
            # A missing container stays missing: retrying cannot help.
            return ActionOutcome(
                ok=False, output=f"{host}: no such container {name!r}", retryable=False
            )
        # 4xx is the engine refusing (conflict, bad request): the same answer next time.
        retryable = not 400 <= exc.status < 500
        return ActionOutcome(ok=False, output=f"{host}: docker: {exc.message}", retryable=retryable)
    except TransientError as exc:
        return ActionOutcome(ok=False, output=f"{host}: Docker API unreachable: {exc}")
    state = after["State"]
    started_after = state.get("StartedAt", "")
    if not state.get("Running"):
        return ActionOutcome(ok=False, output=f"{host}/{name}: not running after {verb}")
    if not _newer(started_after, started_before):
        return ActionOutcome(
            ok=False, output=f"{host}/{name}: StartedAt not newer after {verb} ({started_after})"
        )
    message = f"{verb} {host}/{name}: StartedAt {started_before} -> {started_after}"
    if not _has_healthcheck(after):
        return ActionOutcome(ok=True, output=message)
    wait = min(healthy_timeout, max(deadline - time.monotonic(), 0))
    status = await _wait_healthy(lambda: with_retries(inspect, 5), wait)
    if status != "healthy":
        return ActionOutcome(ok=False, output=f"{message}; health {status} after {wait:.0f}s")
    return ActionOutcome(ok=True, output=f"{message}; healthy")


_STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


def _started(stamp: str) -> datetime | None:
    """Docker's StartedAt (RFC 3339, nanoseconds, trailing zeros trimmed) as a datetime."""
    found = _STAMP.match(stamp or "")
    if found is None:
        return None
    fraction = (found[2] or "")[:6].ljust(6, "0")
    zone = "+00:00" if found[3] == "Z" else found[3]
    return datetime.fromisoformat(f"{found[1]}.{fraction}{zone}")


def _newer(after: str, before: str) -> bool:
    """True when the container started after it last had (a never-started one has year 1)."""
    new, old = _started(after), _started(before)
    if new is None:
        return False
    return old is None or new > old


def _has_healthcheck(container: Any) -> bool:
    """Docker omits State.Health without a healthcheck; podman reports it with Status ""."""
    test = ((container["Config"] or {}).get("Healthcheck") or {}).get("Test") or []
    return bool(test) and test[0] != "NONE"


async def _wait_healthy(inspect: Callable[[], Awaitable[Any]], within: float) -> str:
    """Poll the health status until healthy or unhealthy-for-good, at most ``within`` seconds."""
    deadline = time.monotonic() + within
    status = "starting"
    while True:
        info = await inspect()
        status = (info["State"].get("Health") or {}).get("Status", "none")
        if status == "healthy" or time.monotonic() >= deadline:
            return str(status)
        await asyncio.sleep(min(0.25, max(deadline - time.monotonic(), 0)))
