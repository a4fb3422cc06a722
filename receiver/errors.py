"""The few exceptions autoheal raises on purpose, each carrying what went wrong."""

from __future__ import annotations

from typing import Any, ClassVar


class AutohealError(Exception):
    """Base of autoheal's own errors. One raised by a request handler is answered by one
    middleware (``api.error_middleware``) with its ``http_status`` and ``problem()``: the
    handlers do not catch them one by one."""

    http_status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def problem(self) -> tuple[str, dict[str, Any]]:
        """The sentence of the JSON problem body, and any fields beside it."""
        return str(self), {}


class ConfigError(AutohealError):
    """Settings or files that stop start-up."""


class PlaybookError(AutohealError):
    """A playbook, classifier or task file that does not validate."""

    http_status = 422  # a reload with a bad file: the running set stays
    code = "invalid_playbooks"

    def __init__(
        self,
        file: str,
        playbook: str | None,
        field: str | None,
        message: str,
        *,
        kind: str = "playbook",  # what ``playbook`` names: a playbook, or a task
    ) -> None:
        self.file = file
        self.playbook = playbook
        self.field = field
        self.message = message
        where = file
        if playbook:
            where += f": {kind} {playbook!r}"
        if field:
            where += f": field {field!r}"
        super().__init__(f"{where}: {message}")


class SlotError(AutohealError):
    """A templated value from alert data that does not fit its slot: never executed."""

    def __init__(self, slot: str, value: str, reason: str) -> None:
        self.slot = slot
        self.value = value
        self.reason = reason
        shown = value if len(value) <= 64 else value[:61] + "..."
        super().__init__(f"slot {slot!r} refused {shown!r}: {reason}")


class StoreUnavailable(AutohealError):
    """The database could not durably take what was sent."""

    http_status = 503  # a 5xx makes Alertmanager retry: right when nothing was stored
    code = "store_unavailable"

    def problem(self) -> tuple[str, dict[str, Any]]:
        return f"not stored, retry later ({self})", {}


class Unstorable(AutohealError):
    """The store refused a request for something in the request itself: a retry cannot help
    (answered 4xx, so the sender stops resending it)."""

    http_status = 422
    code = "unstorable"

    def problem(self) -> tuple[str, dict[str, Any]]:
        return f"the store cannot hold this request ({self})", {}
