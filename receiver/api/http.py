"""The HTTP edge every handler shares: bodies parsed into models (or a 4xx naming what
is wrong), JSON answers and problems, and the middleware that turns autoheal's errors into
their status and problem body."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler
from aiohttp.web_protocol import RequestPayloadError
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import SQLAlchemyError

from receiver import appkeys
from receiver.errors import AutohealError
from receiver.jsoncodec import dumps, dumps_bytes
from receiver.payloads import DecisionReport

log = logging.getLogger(__name__)


M = TypeVar("M", bound=BaseModel)


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=dumps_bytes(data), status=status, content_type="application/json")


_ERRORS: dict[int, type[web.HTTPException]] = {
    400: web.HTTPBadRequest,
    404: web.HTTPNotFound,
    408: web.HTTPRequestTimeout,
    415: web.HTTPUnsupportedMediaType,
    409: web.HTTPConflict,
    422: web.HTTPUnprocessableEntity,
    500: web.HTTPInternalServerError,
    503: web.HTTPServiceUnavailable,
}


def problem(status: int, error: str, detail: str, **extra: Any) -> web.HTTPException:
    """A JSON error body: {"error": code, "detail": text, ...}."""
    body = dumps({"error": error, "detail": detail, **extra})
    if status == 413:
        return web.HTTPRequestEntityTooLarge(
            max_size=0, actual_size=0, text=body, content_type="application/json"
        )
    return _ERRORS[status](text=body, content_type="application/json")


# A JSON \u0000 escape (a NUL), not the text "\u0000" written with an escaped backslash: the
# escape's backslash is preceded by an even number of backslashes (JSON allows them only as
# escapes inside strings, so pairs are escaped backslashes).
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


async def parse(request: web.Request, model: type[M]) -> M:
    """Body -> model, or a 4xx that names what is wrong."""
    if request.content_type != "application/json":
        raise problem(415, "unsupported_media_type", "send Content-Type: application/json")
    limit = request.app[appkeys.SETTINGS].max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise problem(413, "too_large", f"body over {limit} bytes")
    try:
        # Credentials were checked before this read (auth middleware); a body trickled in
        # slower than the deadline gives up its connection. (Most bodies arrived with their
        # head: no deadline to arm for those.)
        if request.content.is_eof():
            raw = await request.read()
        else:
            async with asyncio.timeout(request.app[appkeys.SETTINGS].body_timeout_seconds):
                raw = await request.read()  # client_max_size also stops chunked bodies
    except TimeoutError as exc:
        raise problem(408, "body_timeout", "the body did not arrive in time") from exc
    except web.HTTPRequestEntityTooLarge as exc:
        raise problem(413, "too_large", f"body over {limit} bytes") from exc
    except (HttpProcessingError, RequestPayloadError) as exc:
        # Undecodable Content-Encoding (bad gzip or deflate, trailing garbage): the client's.
        raise problem(
            400, "bad_content_encoding", f"body cannot be decoded ({type(exc).__name__})"
        ) from exc
    try:
        body = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise problem(400, "bad_encoding", f"body is not UTF-8 (byte {exc.start})") from exc
    # The substring test first: the regex costs ~80 us per KB, the test ~0.5.
    if "\\u0000" in body and _NUL_ESCAPE.search(body):
        # PostgreSQL text cannot hold NUL; stored it would fail every retry (and Alertmanager
        # would retry forever), so refuse it here.
        raise problem(400, "invalid_json", "NUL characters (\\u0000) are not accepted")
    try:
        # pydantic parses and validates in one pass (about half the cost of json.loads + validate).
        return model.model_validate_json(body)
    except ValidationError as exc:
        problems = exc.errors(include_url=False)
        if problems[0]["type"] == "json_invalid":
            # Not JSON at all, or nesting deeper than the parser allows.
            raise problem(400, "invalid_json", f"not valid JSON: {problems[0]['msg']}") from exc
        errors = [
            {"field": ".".join(map(str, e["loc"])) or "(body)", "message": e["msg"]}
            for e in problems[:20]
        ]
        first = errors[0]
        raise problem(
            422, "invalid_payload", f"{first['field']}: {first['message']}", errors=errors
        ) from exc


async def decided_by(request: web.Request) -> str:
    """Who a person's decision comes from (approve, deny, resume, lift): the optional body's
    ``by``, else "api", as ``"name (api)"``."""
    by = "api"
    if request.can_read_body:
        by = (await parse(request, DecisionReport)).by or by
    return f"{by} (api)"


def int_param(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise problem(400, "bad_parameter", f"{name} must be an integer") from exc
    if not lo <= value <= hi:
        raise problem(400, "bad_parameter", f"{name} must be between {lo} and {hi}")
    return value


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """autoheal's own errors become their status and problem body (``errors.AutohealError``);
    store trouble is a 503 (retry later); nothing a client sends becomes a 500."""
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except web.HTTPException:
        raise
    except AutohealError as exc:
        detail, extra = exc.problem()
        raise problem(exc.http_status, exc.code, detail, **extra) from exc
    except SQLAlchemyError as exc:
        log.warning("store error on %s %s: %s", request.method, request.path, type(exc).__name__)
        raise problem(503, "store_unavailable", "the store is unavailable, retry later") from exc
