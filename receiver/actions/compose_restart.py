"""compose_restart: ``docker compose -f FILE restart SERVICE`` over SSH, as the seed did."""

from __future__ import annotations

from typing import ClassVar

from receiver.actions.base import (
    AbsolutePath,
    ActionContext,
    ActionOutcome,
    ActionParams,
    HostName,
    ServiceName,
    Subject,
)
from receiver.actions.ssh import run_allowed


class ComposeRestartParams(ActionParams):
    host: HostName
    file: AbsolutePath
    service: ServiceName
    legacy: bool = False  # the docker-compose v1 binary instead of the compose plugin


class ComposeRestart:
    kind: ClassVar[str] = "compose_restart"
    params_model: ClassVar[type[ActionParams]] = ComposeRestartParams
    exclusive: ClassVar[bool] = True

    def target(self, params: ComposeRestartParams) -> str:
        return f"{params.host}/{params.service}"

    def subject(self, params: ComposeRestartParams) -> Subject:
        return Subject(params.host)  # its diagnostic; the service's containers are compose's

    def describe(self, params: ComposeRestartParams) -> str:
        program = "docker-compose" if params.legacy else "docker compose"
        return f"{program} -f {params.file} restart {params.service} on {params.host}"

    async def run(self, params: ComposeRestartParams, ctx: ActionContext) -> ActionOutcome:
        command = "compose_v1_restart" if params.legacy else "compose_restart"
        return await run_allowed(
            ctx, params.host, command, {"file": params.file, "service": params.service}
        )
