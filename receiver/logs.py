"""Logging for the process: one handler, text / logfmt / JSON, and no secret in any line.

Every record leaving the process passes one formatter, whichever library's logger wrote it
(aiohttp's server logger quotes raw request headers when it refuses a malformed request).
The formatter renders the whole line, traceback included, then redacts it: the configured
secrets by value, and whatever follows ``Authorization``, ``Bearer`` or ``Basic``.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, TextIO

from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from receiver.jsoncodec import dumps

REDACTED = "[REDACTED]"
FORMATS = ("text", "logfmt", "json")

# Credentials by their shape, for values no setting names (a client's wrong token is still
# somebody's token). A quote, comma or whitespace ends the value; escapes such as \x01 that a
# repr() of raw header bytes writes are taken as part of it.
_SHAPES = re.compile(
    r"(?i)(?P<lead>\b(?:authorization|proxy-authorization|x-telegram-bot-api-secret-token)"
    r"\b[\"']?\s*[:=]\s*[\"']?(?:(?:bearer|basic|token)\s+)?|\b(?:bearer|basic)\s+)"
    r"(?P<value>[^\s\"',;]+)"
)
# Attributes every LogRecord has; anything else was passed in ``extra=`` (structured fields).
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


class Redactor:
    """Replaces secrets in text. Secrets shorter than 4 characters are not searched for
    (they would redact half of every line).

    Every line of the process passes here, a storm's thousands of lines a second included:
    plain substring tests (C speed) decide whether a regex needs to run at all."""

    _HINTS = ("authoriz", "bearer", "basic", "secret-token")

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first: a secret containing another is replaced whole.
        self._values = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for value in self._values:
            if value in text:
                text = text.replace(value, REDACTED)
        lower = text.lower()
        if any(hint in lower for hint in self._HINTS):
            text = _SHAPES.sub(lambda m: m["lead"] + REDACTED, text)
        return text


def fields(record: logging.LogRecord) -> dict[str, Any]:
    """The structured fields of a record (what was passed in ``extra=``)."""
    return {k: v for k, v in vars(record).items() if k not in _RECORD_FIELDS}


_NEEDS_QUOTES = re.compile(r'[\s="\\]')


def _logfmt_value(value: Any) -> str:
    if isinstance(value, bool | int | float):
        return "true" if value is True else "false" if value is False else str(value)
    text = value if isinstance(value, str) else dumps(value) if value is not None else ""
    if text and _NEEDS_QUOTES.search(text) is None and text.isprintable():
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


class RedactingFormatter(logging.Formatter):
    """Formats a record as one line of the chosen format, then redacts it."""

    def __init__(self, style: str = "text", redact: Redactor | None = None) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        if style not in FORMATS:
            raise ValueError(f"log format must be one of {FORMATS}")
        self.style_name = style
        self.redact = redact or Redactor()

    def format(self, record: logging.LogRecord) -> str:
        return self.redact(self._render(record))

    def _render(self, record: logging.LogRecord) -> str:
        if self.style_name == "text":
            line = super().format(record)
            extra = fields(record)
            if extra:
                line += " " + " ".join(f"{k}={_logfmt_value(v)}" for k, v in extra.items())
            return line
        data: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **fields(record),
        }
        if record.exc_info:
            data["error"] = self.formatException(record.exc_info)
        if self.style_name == "json":
            return dumps(data)
        return " ".join(f"{k}={_logfmt_value(v)}" for k, v in data.items())


class ShortProtocolErrors(logging.Filter):
    """aiohttp's server logs a refused request (bad request line, header, encoding) at ERROR
    with a traceback that quotes what the client sent: 1-6 KB per request, so anyone who can
    connect could flood the log. It does so again when it drains a body it cannot decode
    after the handler answered ("Unhandled exception"). Keep one short WARNING line naming
    the error's type."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None:
            return True
        if isinstance(exc, HttpProcessingError | RequestPayloadError):
            status = getattr(exc, "code", 400) or 400
            record.msg = "refused a malformed request: %s (%s)"
            record.args = (type(exc).__name__, status)
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def configure(
    level: str = "INFO",
    style: str = "text",
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
) -> logging.Handler:
    """Install the one handler on the root logger (replacing any) and return it."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(RedactingFormatter(style, Redactor(secrets)))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # No format here shows the caller's file, thread or process: not looking them up saves
    # a third of each record's cost (the logging HOWTO's "Optimization"), which counts when a
    # storm writes a line per incident transition.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    server = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, ShortProtocolErrors) for f in server.filters):
        server.addFilter(ShortProtocolErrors())
    return handler
