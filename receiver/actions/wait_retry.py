"""wait_retry: do nothing now, look again after a wait (e.g. an HTTP 429 back-off)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from receiver.actions.base import ActionContext, ActionOutcome, ActionParams


class WaitRetryParams(ActionParams):
    wait_minutes: float = Field(gt=0, le=24 * 60)


class WaitRetry:
    kind: ClassVar[str] = "wait_retry"
    params_model: ClassVar[type[ActionParams]] = WaitRetryParams
    exclusive: ClassVar[bool] = False

    def target(self, params: WaitRetryParams) -> str:
        return "wait"

    def describe(self, params: WaitRetryParams) -> str:
        return f"wait {params.wait_minutes:g} min, then re-check"

    async def run(self, params: WaitRetryParams, ctx: ActionContext) -> ActionOutcome:
        # The wait is a verify deadline in the store, not a sleeping task: it survives restarts
        # and holds no worker slot.
        seconds = params.wait_minutes * 60
        return ActionOutcome(ok=True, output=f"waiting {seconds:g}s", verify_after=seconds)
