"""JSON for the hot paths: webhook answers and the JSON columns of every row stored and read.

orjson is several times faster than the standard library here; the standard library remains
the fallback for what orjson refuses (integers beyond 64 bits, which a client may send in an
unknown field), so the output is the same JSON either way.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import orjson

_OPTIONS = orjson.OPT_NON_STR_KEYS


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def dumps_bytes(value: Any) -> bytes:
    try:
        return orjson.dumps(value, option=_OPTIONS)
    except orjson.JSONEncodeError:
        return json.dumps(value, default=_default).encode()


def dumps(value: Any) -> str:
    return dumps_bytes(value).decode()


def loads(text: str | bytes) -> Any:
    """The JSON columns read back (the worker reads every claimed incident's labels)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)  # what orjson refuses to read, as it refused to write it
