"""An action whose result the test decides: drives the real worker through every edge."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import ClassVar, Literal

from pydantic import Field

from receiver.actions import ACTIONS
from receiver.actions.base import Action, ActionContext, ActionOutcome, ActionParams, ContainerName

RUNS: list[tuple[int, str]] = []
# (incident, container, started, finished) in monotonic seconds, for overlap checks.
SPANS: list[tuple[int, str, float, float]] = []


class ScriptedParams(ActionParams):
    container: ContainerName = "box"
    outcome: Literal["ok", "fail", "fatal"] = "ok"
    sleep: float = Field(default=0, ge=0)


class Scripted:
    kind: ClassVar[str] = "scripted"
    params_model: ClassVar[type[ActionParams]] = ScriptedParams
    exclusive: ClassVar[bool] = True

    def target(self, params: ScriptedParams) -> str:
        return f"container:{params.container}"

    def describe(self, params: ScriptedParams) -> str:
        return f"scripted {params.outcome} on {params.container}"

    async def run(self, params: ScriptedParams, ctx: ActionContext) -> ActionOutcome:
        RUNS.append((ctx.incident_id, params.container))
        started = time.monotonic()
        if params.sleep:
            await asyncio.sleep(params.sleep)
        SPANS.append((ctx.incident_id, params.container, started, time.monotonic()))
        # A label may decide the outcome, so one playbook can see several (knowledge tests).
        outcome = ctx.labels.get("scripted_outcome") or params.outcome
        if outcome == "ok":
            return ActionOutcome(ok=True, output=f"did it to {params.container}")
        return ActionOutcome(ok=False, output="it broke", retryable=outcome == "fail")


# The built-in actions and this one: what the tests' apps are given (create_app(actions=...)).
WITH_SCRIPTED: Mapping[str, Action] = {**ACTIONS, Scripted.kind: Scripted()}  # type: ignore[dict-item]
