"""docker_start: start a stopped container through the Docker Engine API."""

from __future__ import annotations

from typing import ClassVar

from receiver.actions._docker import act_and_confirm
from receiver.actions.base import ActionContext, ActionOutcome, ActionParams, ContainerName


class DockerStartParams(ActionParams):
    container: ContainerName


class DockerStart:
    kind: ClassVar[str] = "docker_start"
    params_model: ClassVar[type[ActionParams]] = DockerStartParams

    def target(self, params: DockerStartParams) -> str:
        return f"container:{params.container}"

    def describe(self, params: DockerStartParams) -> str:
        return f"docker start {params.container}"

    async def run(self, params: DockerStartParams, ctx: ActionContext) -> ActionOutcome:
        return await act_and_confirm(ctx, params.container, "start", lambda c: c.start())
