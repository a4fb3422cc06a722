"""The Action Protocol every remediation kind implements, and what it gets and returns."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Protocol, runtime_checkable

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationInfo

from receiver.domain import EscalationReason
from receiver.slots import ABS_PATH, DOCKER_NAME, HOST_NAME

if TYPE_CHECKING:
    from receiver.resources import Resources


def _loading(info: ValidationInfo, value: str) -> bool:
    """At load time a templated value is checked later, once labels fill it."""
    return bool(info.context and info.context.get("templated") and "${" in value)


def _slot(pattern: re.Pattern[str], what: str) -> AfterValidator:
    def check(value: str, info: ValidationInfo) -> str:
        if _loading(info, value):
            return value
        if pattern.fullmatch(value) is None:
            raise ValueError(f"not a valid {what}: must match {pattern.pattern}")
        if pattern is ABS_PATH and any(p in (".", "..") for p in value.split("/")):
            raise ValueError(f"not a valid {what}: no '.' or '..' segments")
        return value

    return AfterValidator(check)


def _known_host(value: str, info: ValidationInfo) -> str:
    if _loading(info, value):
        return value
    if HOST_NAME.fullmatch(value) is None:
        raise ValueError(f"not a valid host name: must match {HOST_NAME.pattern}")
    inventory = info.context.get("inventory") if info.context else None
    if inventory is not None and value not in inventory.hosts:
        raise ValueError(f"host {value!r} is not in the host inventory")
    return value


ContainerName = Annotated[str, _slot(DOCKER_NAME, "container name")]
ServiceName = Annotated[str, _slot(DOCKER_NAME, "service name")]
TargetName = Annotated[str, _slot(DOCKER_NAME, "target name")]  # what a call acts on
AbsolutePath = Annotated[str, _slot(ABS_PATH, "absolute path")]
HostName = Annotated[str, AfterValidator(_known_host)]


class ActionParams(BaseModel):
    """Base of every action's parameter model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True, slots=True)
class ActionContext:
    """What an action may know about the incident it serves, and the clients it may use."""

    incident_id: int
    labels: Mapping[str, str]
    timeout: float
    resources: Resources | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def need(self) -> Resources:
        if self.resources is None:
            raise RuntimeError("this action needs the service's clients (none configured)")
        return self.resources


@dataclass(frozen=True, slots=True)
class ActionOutcome:
    """The result of one attempt, as the heal log records it."""

    ok: bool
    output: str = ""
    # False for failures a retry cannot fix (missing container, 4xx): escalate at once.
    retryable: bool = True
    # Seconds to wait before judging the heal; None means the playbook's verify window.
    verify_after: float | None = None
    # Set when the action by design hands the incident to humans (alert_only).
    escalate: EscalationReason | None = None
    # What actually ran, when the action knows better than its description (the argv sent).
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class Subject:
    """What an action is about to change, as the evidence capture looks at it first: the
    container on a host (its State and logs), or the host (its diagnostic command)."""

    host: str
    container: str | None = None


class Action(Protocol):
    """One remediation kind. Register an instance in receiver.actions.ACTIONS."""

    kind: ClassVar[str]
    params_model: ClassVar[type[ActionParams]]
    # Whether the action changes its target: such actions run one at a time per target
    # (a lock in the store). False for those that act on nothing (alert only, wait).
    exclusive: ClassVar[bool]

    def target(self, params: Any) -> str:
        """What the action acts on: the key for cooldowns and per-target locks."""

    def describe(self, params: Any) -> str:
        """What runs, naming the target: the heal log's action_detail."""

    async def run(self, params: Any, ctx: ActionContext) -> ActionOutcome:
        """Do it, within ctx.timeout (the worker also enforces it)."""


@runtime_checkable
class Inspected(Protocol):
    """An action whose target is looked at before it acts (receiver.evidence): implement
    ``subject`` beside the Action members."""

    def subject(self, params: Any) -> Subject:
        """The host (and container) the action changes."""
