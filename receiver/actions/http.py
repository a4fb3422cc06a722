"""http: call a URL under an allow-listed base (a job runner, a feature flag), 2xx = success."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator

from receiver.actions.base import ActionContext, ActionOutcome, ActionParams, TargetName
from receiver.retry import TransientError, with_retries

MAX_BODY = 65_536


class HTTPParams(ActionParams):
    url: str = Field(max_length=2048)
    method: Literal["GET", "POST", "PUT"] = "POST"
    # JSON body; string values may hold ${labels.NAME} slots (sent as data, never executed).
    body: dict[str, Any] | None = None
    # What the call acts on, for the per-target lock and cooldown (e.g. the job it restarts:
    # "${labels.job}"); without it, the URL is the target and calls to it run one at a time.
    target: TargetName | None = None

    @field_validator("url")
    @classmethod
    def _allowed(cls, value: str, info: ValidationInfo) -> str:
        if "${" in value:
            raise ValueError("the URL is literal; put label values in the body")
        allow = info.context.get("http_allow") if info.context else None
        if allow is not None and not any(value.startswith(base) for base in allow):
            raise ValueError(f"{value!r} is not under an allow-listed base URL (http_allow)")
        return value


class HTTPCall:
    kind: ClassVar[str] = "http"
    params_model: ClassVar[type[ActionParams]] = HTTPParams
    exclusive: ClassVar[bool] = True

    def target(self, params: HTTPParams) -> str:
        return f"http:{params.target}" if params.target else f"http:{params.url}"

    def describe(self, params: HTTPParams) -> str:
        return f"{params.method} {params.url}"

    async def run(self, params: HTTPParams, ctx: ActionContext) -> ActionOutcome:
        import aiohttp

        resources = ctx.need()
        if not any(params.url.startswith(base) for base in resources.http_allow):
            return ActionOutcome(ok=False, output="URL not allow-listed", retryable=False)
        session = resources.http
        if session is None:
            return ActionOutcome(ok=False, output="no HTTP client", retryable=False)

        async def call() -> tuple[int, str]:
            try:
                async with session.request(
                    params.method,
                    params.url,
                    json=params.body,
                    timeout=aiohttp.ClientTimeout(total=ctx.timeout),
                ) as resp:
                    text = (await resp.content.read(MAX_BODY)).decode("utf-8", "replace")
                    if resp.status >= 500:
                        raise TransientError(f"HTTP {resp.status}: {text[:200]}")
                    return resp.status, text
            except aiohttp.ClientConnectionError as exc:
                raise TransientError(str(exc)) from exc

        try:
            status, text = await with_retries(call, ctx.timeout)
        except TransientError as exc:
            return ActionOutcome(ok=False, output=str(exc))
        if 200 <= status < 300:
            return ActionOutcome(ok=True, output=f"HTTP {status}\n{text}")
        return ActionOutcome(ok=False, output=f"HTTP {status}\n{text}", retryable=False)
