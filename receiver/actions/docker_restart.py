"""docker_restart: restart a container through the Docker Engine API."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from receiver.actions._docker import act_and_confirm
from receiver.actions.base import ActionContext, ActionOutcome, ActionParams, ContainerName


class DockerRestartParams(ActionParams):
    container: ContainerName
    stop_timeout: int = Field(default=10, ge=0, le=600)


class DockerRestart:
    kind: ClassVar[str] = "docker_restart"
    params_model: ClassVar[type[ActionParams]] = DockerRestartParams

    def target(self, params: DockerRestartParams) -> str:
        return f"container:{params.container}"

    def describe(self, params: DockerRestartParams) -> str:
        return f"docker restart -t {params.stop_timeout} {params.container}"

    async def run(self, params: DockerRestartParams, ctx: ActionContext) -> ActionOutcome:
        return await act_and_confirm(
            ctx, params.container, "restart", lambda c: c.restart(t=params.stop_timeout)
        )
