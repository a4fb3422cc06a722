"""The Action Protocol every remediation kind implements, and what it gets and returns."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Protocol

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationInfo

from receiver.domain import EscalationReason

# Docker's own container-name rule, bounded; ASCII ranges only, so look-alike letters fail.
DOCKER_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}")


def _slot(pattern: re.Pattern[str], what: str) -> AfterValidator:
    def check(value: str, info: ValidationInfo) -> str:
        # At load time a templated value is checked later, once labels fill it.
        if info.context and info.context.get("templated") and "${" in value:
            return value
        if pattern.fullmatch(value) is None:
            raise ValueError(f"not a valid {what}: must match {pattern.pattern}")
        return value

    return AfterValidator(check)


ContainerName = Annotated[str, _slot(DOCKER_NAME, "container name")]


class ActionParams(BaseModel):
    """Base of every action's parameter model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True, slots=True)
class ActionContext:
    """What an action may know about the incident it serves."""

    incident_id: int
    labels: Mapping[str, str]
    timeout: float
    resources: Mapping[str, Any] = field(default_factory=dict)


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


class Action(Protocol):
    """One remediation kind. Register an instance in receiver.actions.ACTIONS."""

    kind: ClassVar[str]
    params_model: ClassVar[type[ActionParams]]

    def target(self, params: Any) -> str:
        """What the action acts on: the key for cooldowns and per-target locks."""

    def describe(self, params: Any) -> str:
        """What runs, naming the target: the heal log's action_detail."""

    async def run(self, params: Any, ctx: ActionContext) -> ActionOutcome:
        """Do it, within ctx.timeout (the worker also enforces it)."""
