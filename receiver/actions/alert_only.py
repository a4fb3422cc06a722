"""alert_only: no repair; hand the incident to people with a message."""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import StringConstraints

from receiver.actions.base import ActionContext, ActionOutcome, ActionParams
from receiver.domain import EscalationReason


class AlertOnlyParams(ActionParams):
    message: Annotated[str, StringConstraints(min_length=1, max_length=4096)]


class AlertOnly:
    kind: ClassVar[str] = "alert_only"
    params_model: ClassVar[type[ActionParams]] = AlertOnlyParams
    exclusive: ClassVar[bool] = False

    def target(self, params: AlertOnlyParams) -> str:
        return "notify"

    def describe(self, params: AlertOnlyParams) -> str:
        return f"alert only: {params.message}"

    async def run(self, params: AlertOnlyParams, ctx: ActionContext) -> ActionOutcome:
        # Delivery goes through the notification outbox; the attempt itself is the hand-off.
        return ActionOutcome(ok=True, output=params.message, escalate=EscalationReason.ALERT_ONLY)
