"""Shared steps of the container actions: inspect, act, confirm a fresh start."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiodocker import Docker
from aiodocker.containers import DockerContainer
from aiodocker.exceptions import DockerError

from receiver.actions.base import ActionContext, ActionOutcome


def docker_client(ctx: ActionContext) -> Docker:
    client = ctx.resources.get("docker")
    if not isinstance(client, Docker):
        raise RuntimeError("no Docker client configured (AUTOHEAL_DOCKER_URL)")
    return client


async def act_and_confirm(
    ctx: ActionContext, name: str, verb: str, act: Callable[[DockerContainer], Awaitable[Any]]
) -> ActionOutcome:
    """Run ``act`` on container ``name`` and confirm it runs with a newer StartedAt."""
    try:
        return await _act_and_confirm(docker_client(ctx), name, verb, act)
    except DockerError as exc:
        if exc.status == 404:
            # A missing container stays missing: retrying cannot help.
            return ActionOutcome(ok=False, output=f"no such container {name!r}", retryable=False)
        # 4xx are the engine refusing (conflict, bad request): a retry gets the same answer.
        retryable = not 400 <= exc.status < 500
        return ActionOutcome(ok=False, output=f"docker: {exc.message}", retryable=retryable)


async def _act_and_confirm(
    docker: Docker, name: str, verb: str, act: Callable[[DockerContainer], Awaitable[Any]]
) -> ActionOutcome:
    container = await docker.containers.get(name)
    before = container["State"].get("StartedAt", "")
    await act(container)
    after_info = await docker.containers.get(name)
    state = after_info["State"]
    after = state.get("StartedAt", "")
    if not state.get("Running"):
        return ActionOutcome(ok=False, output=f"{name}: not running after {verb} ({state})")
    if after == before:
        return ActionOutcome(ok=False, output=f"{name}: StartedAt unchanged after {verb}")
    return ActionOutcome(ok=True, output=f"{verb} {name}: StartedAt {before} -> {after}")
