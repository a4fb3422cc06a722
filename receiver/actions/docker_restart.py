"""docker_restart: restart a container (Engine API, or ``docker restart`` over SSH)."""

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


class DockerRestartParams(ActionParams):
    container: ContainerName
    host: HostName = "local"
    stop_timeout: int = Field(default=10, ge=0, le=600)
    healthy_timeout: float = Field(default=60, ge=0, le=600)


class DockerRestart:
    kind: ClassVar[str] = "docker_restart"
    params_model: ClassVar[type[ActionParams]] = DockerRestartParams
    exclusive: ClassVar[bool] = True

    def target(self, params: DockerRestartParams) -> str:
        return f"{params.host}/{params.container}"

    def subject(self, params: DockerRestartParams) -> Subject:
        return Subject(params.host, params.container)

    def describe(self, params: DockerRestartParams) -> str:
        return f"docker restart -t {params.stop_timeout} {params.container} on {params.host}"

    async def run(self, params: DockerRestartParams, ctx: ActionContext) -> ActionOutcome:
        return await container_action(
            ctx,
            params.host,
            params.container,
            "restart",
            lambda c: c.restart(t=params.stop_timeout),
            "docker_restart",
            params.healthy_timeout,
        )
