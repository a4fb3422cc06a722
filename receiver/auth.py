"""Bearer and basic authentication, as Alertmanager's http_config sends them."""

from __future__ import annotations

import base64
import binascii
import hmac

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from receiver.config import Settings

# /api/v1/telegram/updates authenticates Telegram by its secret-token header instead (api.py).
OPEN_PATHS = frozenset(
    {"/healthz", "/readyz", "/metrics", "/api/v1/telegram/updates", "/api/v1/openapi.json"}
)


def is_page(path: str) -> bool:
    """The web page for people (/ui): it logs them in with a session of its own."""
    return path == "/ui" or path.startswith("/ui/")


def _eq(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def authorized(settings: Settings, header: str | None) -> bool:
    """True when the Authorization header carries a configured credential."""
    if not settings.has_credentials:
        return True
    if not header:
        return False
    scheme, _, value = header.partition(" ")
    scheme = scheme.lower()
    value = value.strip()
    if scheme == "bearer" and settings.auth_token is not None:
        return _eq(value, settings.auth_token.get_secret_value())
    if scheme == "basic" and settings.basic_auth is not None:
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return _eq(decoded, settings.basic_auth.get_secret_value())
    return False


def auth_middleware(settings: Settings) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if (
            not is_page(request.path)  # the page logs people in itself (receiver.ui)
            and request.path not in OPEN_PATHS
            and not authorized(settings, request.headers.get("Authorization"))
        ):
            challenge = (
                'Bearer realm="autoheal"' if settings.auth_token else 'Basic realm="autoheal"'
            )
            return web.json_response(
                {"error": "unauthorized", "detail": "missing or wrong credentials"},
                status=401,
                headers={"WWW-Authenticate": challenge},
            )
        response: web.StreamResponse = await handler(request)
        return response

    return middleware
