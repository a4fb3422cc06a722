"""docker_start: start a stopped container (Engine API, or ``docker start`` over SSH)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from receiver.actions._docker import container_action
from receiver.actions.base import (
    ActionContext,
    ActionOutcome,
    ActionParams,
    ContainerName,
    HostName,
    Subject,
)


class DockerStartParams(ActionParams):
    container: ContainerName
    host: HostName = "local"
    healthy_timeout: float = Field(default=60, ge=0, le=600)


class DockerStart:
    kind: ClassVar[str] = "docker_start"
    params_model: ClassVar[type[ActionParams]] = DockerStartParams
    exclusive: ClassVar[bool] = True

    def target(self, params: DockerStartParams) -> str:
        return f"{params.host}/{params.container}"

    def subject(self, params: DockerStartParams) -> Subject:
        return Subject(params.host, params.container)

    def describe(self, params: DockerStartParams) -> str:
        return f"docker start {params.container} on {params.host}"

    async def run(self, params: DockerStartParams, ctx: ActionContext) -> ActionOutcome:
        return await container_action(
            ctx,
            params.host,
            params.container,
            "start",
            lambda c: c.start(),
            "docker_start",
            params.healthy_timeout,
        )
