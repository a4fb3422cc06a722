"""ssh_command: run an allow-listed argv on an inventory host over SSH.

The playbook names a command from the allow-list and fills its slots; the argv is rendered
with every slot checked, quoted with shlex.join, and sent. Nothing else can reach a shell.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, ClassVar

from pydantic import StringConstraints, ValidationInfo, field_validator, model_validator

from receiver.actions.base import ActionContext, ActionOutcome, ActionParams, HostName, Subject
from receiver.errors import SlotError
from receiver.retry import with_retries


async def run_allowed(
    ctx: ActionContext, host: str, command: str, values: Mapping[str, str]
) -> ActionOutcome:
    """Render an allow-listed command for ``host`` and run it; refusals run nothing."""
    resources = ctx.need()
    template = resources.inventory.commands.get(command)
    if template is None:
        return ActionOutcome(
            ok=False, output=f"command {command!r} is not allow-listed", retryable=False
        )
    try:
        endpoint = resources.inventory.host(host).ssh
        argv = template.render(values)
    except SlotError as exc:
        return ActionOutcome(ok=False, output=f"refused: {exc}", retryable=False)
    if endpoint is None:
        return ActionOutcome(ok=False, output=f"host {host!r} has no SSH endpoint", retryable=False)
    import asyncssh

    try:
        result = await with_retries(lambda: resources.ssh.run(host, argv, ctx.timeout), ctx.timeout)
    except (asyncssh.PermissionDenied, asyncssh.HostKeyNotVerifiable) as exc:
        return ActionOutcome(ok=False, output=f"{host}: ssh refused: {exc}", retryable=False)
    except (asyncssh.Error, OSError, TimeoutError) as exc:
        return ActionOutcome(ok=False, output=f"{host}: ssh failed: {type(exc).__name__}: {exc}")
    detail = f"ssh {host}: {result.command}"
    if result.exit_status != 0:
        return ActionOutcome(
            ok=False, detail=detail, output=f"exit {result.exit_status}\n{result.output}"
        )
    return ActionOutcome(ok=True, output=result.output, detail=detail)


SlotValue = Annotated[str, StringConstraints(max_length=4096)]


class SSHCommandParams(ActionParams):
    host: HostName
    command: str
    args: dict[str, SlotValue] = {}

    @field_validator("command")
    @classmethod
    def _allowed(cls, value: str, info: ValidationInfo) -> str:
        inventory = info.context.get("inventory") if info.context else None
        if inventory is not None and value not in inventory.commands:
            known = ", ".join(sorted(inventory.commands))
            raise ValueError(f"command {value!r} is not in the allow-list ({known})")
        return value

    @model_validator(mode="after")
    def _slots_fit(self, info: ValidationInfo) -> SSHCommandParams:
        """Arguments must be exactly the command's slots, each value fitting its pattern."""
        inventory = info.context.get("inventory") if info.context else None
        if inventory is None or self.command not in inventory.commands:
            return self
        template = inventory.commands[self.command]
        if set(self.args) != template.slots:
            raise ValueError(
                f"args must be exactly {sorted(template.slots)} for command {self.command!r}"
            )
        loading = bool(info.context and info.context.get("templated"))
        values = {k: v for k, v in self.args.items() if not (loading and "${" in v)}
        try:
            # Slots still templated at load time get a stand-in that fits their pattern.
            stand_ins = {slot: "/x" if slot == "file" else "x" for slot in template.slots}
            template.render({**stand_ins, **values})
        except SlotError as exc:
            raise ValueError(str(exc)) from exc
        return self


class SSHCommand:
    kind: ClassVar[str] = "ssh_command"
    params_model: ClassVar[type[ActionParams]] = SSHCommandParams
    exclusive: ClassVar[bool] = True

    def target(self, params: SSHCommandParams) -> str:
        named = params.args.get("container") or params.args.get("service") or params.command
        return f"{params.host}/{named}"

    def subject(self, params: SSHCommandParams) -> Subject:
        return Subject(params.host, params.args.get("container"))

    def describe(self, params: SSHCommandParams) -> str:
        args = " ".join(f"{k}={v}" for k, v in sorted(params.args.items()))
        return f"ssh {params.host}: {params.command} {args}".rstrip()

    async def run(self, params: SSHCommandParams, ctx: ActionContext) -> ActionOutcome:
        return await run_allowed(ctx, params.host, params.command, params.args)
