"""Pydantic models of what clients send: the edge of the service.

Unknown fields are kept (``extra="allow"``) so a newer Alertmanager's additions are stored,
not rejected. Sizes are bounded here so nothing oversized reaches the store.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

LabelName = Annotated[str, StringConstraints(min_length=1, max_length=256)]
LabelValue = Annotated[str, StringConstraints(max_length=16_384)]
Labels = Annotated[dict[LabelName, LabelValue], Field(max_length=128)]

# Alertmanager writes the zero time for "no end" on a firing alert.
_GO_ZERO_YEAR = 1
# Times outside this range are refused (422 naming the field): no sender has a good reason for
# them, and the far end of datetime's range overflows when converted to UTC, which the store
# would fail on every retry (Alertmanager retries a 5xx forever).
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


def _finite(value: Any, where: str) -> None:
    """Unknown fields are stored as JSON; PostgreSQL's JSON has no NaN or Infinity, and one
    such number would fail the store on every retry. Refuse it here (422)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where}: numbers must be finite")
    if isinstance(value, dict):
        for key, item in value.items():
            _finite(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _finite(item, f"{where}.{index}")


class _KeepsExtras(BaseModel):
    """Keeps fields it does not name (a newer sender's additions), as long as they store."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    @model_validator(mode="after")
    def _storable_extras(self) -> Any:
        for key, value in (self.__pydantic_extra__ or {}).items():
            _finite(value, key)
        return self


def _no_zero_time(value: datetime | None) -> datetime | None:
    """Go's zero time -> None; naive -> UTC; a time outside EARLIEST..LATEST -> refused."""
    if value is None or value.year <= _GO_ZERO_YEAR:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    if EARLIEST.year < value.year < LATEST.year - 1:
        return value  # within range whatever its offset (under a day): the common case
    try:
        in_utc = value.astimezone(UTC)
    except OverflowError:
        in_utc = None
    if in_utc is None or not EARLIEST <= in_utc < LATEST:
        raise ValueError(f"time must lie between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d} (UTC)")
    return value


class Alert(_KeepsExtras):
    """One alert of an Alertmanager notification."""

    status: Literal["firing", "resolved"]
    labels: Labels
    annotations: Labels = Field(default_factory=dict)
    starts_at: datetime = Field(alias="startsAt")
    ends_at: datetime | None = Field(default=None, alias="endsAt")
    generator_url: Annotated[str, StringConstraints(max_length=8192)] = Field(
        default="", alias="generatorURL"
    )
    fingerprint: Annotated[str, StringConstraints(max_length=128)] | None = None

    _normalise_end = field_validator("ends_at")(_no_zero_time)

    @field_validator("starts_at")
    @classmethod
    def _require_start(cls, value: datetime) -> datetime:
        start = _no_zero_time(value)
        if start is None:
            raise ValueError("startsAt must be a real time")
        return start


class AlertmanagerWebhook(_KeepsExtras):
    """Alertmanager webhook payload, version 4; or Grafana Alerting's webhook contact point,
    version 1: the same shape with ``orgId``, ``title``, ``state``, ``message`` and, per
    alert, ``values``, ``dashboardURL``, ``panelURL``, ``silenceURL`` (kept)."""

    version: Literal["4", "1"]
    status: Literal["firing", "resolved"]
    receiver: Annotated[str, StringConstraints(max_length=1024)] = ""
    alerts: list[Alert] = Field(min_length=1)
    group_labels: Labels = Field(default_factory=dict, alias="groupLabels")
    common_labels: Labels = Field(default_factory=dict, alias="commonLabels")
    common_annotations: Labels = Field(default_factory=dict, alias="commonAnnotations")
    external_url: Annotated[str, StringConstraints(max_length=8192)] = Field(
        default="", alias="externalURL"
    )
    group_key: Annotated[str, StringConstraints(max_length=16_384)] = Field(
        default="", alias="groupKey"
    )
    truncated_alerts: int = Field(default=0, ge=0, le=2**31, alias="truncatedAlerts")
    notification_reason: str | None = Field(default=None, alias="notification_reason")
    route_labels: Labels | None = Field(default=None, alias="routeLabels")
    # Grafana's (version 1)
    org_id: int | None = Field(default=None, alias="orgId")
    title: Annotated[str, StringConstraints(max_length=16_384)] | None = None
    state: Annotated[str, StringConstraints(max_length=64)] | None = None
    message: Annotated[str, StringConstraints(max_length=65_536)] | None = None

    @property
    def from_grafana(self) -> bool:
        return self.version == "1"


class ExceptionReport(_KeepsExtras):
    """A scheduler's report of a failed job."""

    task: Annotated[str, StringConstraints(min_length=1, max_length=100, strip_whitespace=True)]
    message: Annotated[str, StringConstraints(min_length=1, max_length=65_536)]
    exception_type: Annotated[str, StringConstraints(max_length=200)] | None = None
    traceback: Annotated[str, StringConstraints(max_length=1_048_576)] | None = None
    severity: Annotated[str, StringConstraints(max_length=16)] | None = None
    labels: Labels = Field(default_factory=dict)
    occurred_at: datetime | None = None
    id: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = Field(
        default=None, description="client-chosen idempotency key: a retried push is stored once"
    )
    run: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = Field(
        default=None, description="the run that failed (as its start ping named it)"
    )

    @field_validator("occurred_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        return _no_zero_time(value)


TaskName = Annotated[str, StringConstraints(min_length=1, max_length=100, strip_whitespace=True)]
RunId = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class RunPing(BaseModel):
    """A scheduler's ping about one run of a task (receiver.client sends these)."""

    model_config = ConfigDict(extra="forbid")

    task: TaskName
    run: RunId | None = Field(
        default=None, description="names the run: its start and its end carry the same"
    )
    id: RunId | None = Field(
        default=None, description="client-chosen idempotency key: a resent ping counts once"
    )
    at: datetime | None = Field(
        default=None, description="when it happened (a spooled ping arrives later); default now"
    )

    @field_validator("at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        return _no_zero_time(value)

    @property
    def run_key(self) -> str | None:
        """The run this ping is about: named, else a run of its own (by its id)."""
        return self.run or self.id


class SuccessReport(RunPing):
    """A scheduler's ping that a task ran cleanly: resolves its open incidents."""


class StartReport(RunPing):
    """A scheduler's ping that a run of a task started."""


class DecisionReport(BaseModel):
    """An approval or denial through the API; ``by`` names the person for the heal log."""

    model_config = ConfigDict(extra="forbid")

    by: Annotated[str, StringConstraints(max_length=100, strip_whitespace=True)] | None = None


class PauseRequest(BaseModel):
    """Pause autoheal: no action starts on any replica until it is resumed, or for
    ``for_minutes``. ``by`` names the person for the record."""

    model_config = ConfigDict(extra="forbid")

    reason: Annotated[str, StringConstraints(min_length=1, max_length=500, strip_whitespace=True)]
    by: Annotated[str, StringConstraints(max_length=100, strip_whitespace=True)] | None = None
    for_minutes: Annotated[float, Field(gt=0, le=60 * 24 * 30)] | None = None


class TelegramUser(BaseModel):
    id: int
    username: Annotated[str, StringConstraints(max_length=64)] | None = None


class TelegramChat(BaseModel):
    id: int


class TelegramMessage(BaseModel):
    chat: TelegramChat


class TelegramCallback(BaseModel):
    """A button press (Bot API CallbackQuery); unknown fields are ignored."""

    id: Annotated[str, StringConstraints(max_length=200)]
    sender: TelegramUser = Field(alias="from")
    message: TelegramMessage | None = None
    data: Annotated[str, StringConstraints(max_length=64)] = ""

    @property
    def chat_id(self) -> int | None:
        return self.message.chat.id if self.message is not None else None


class TelegramUpdate(BaseModel):
    update_id: int
    callback_query: TelegramCallback | None = None


def extras(model: BaseModel) -> dict[str, Any]:
    """Fields a client sent that the model does not name."""
    return dict(model.model_extra or {})
