"""Bearer and basic authentication, as Alertmanager's http_config sends them; an address
with too many wrong credentials is refused for a while (``receiver.lockout``)."""

from __future__ import annotations

import base64
import binascii
import hmac

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from receiver import appkeys
from receiver.config import Settings
from receiver.lockout import API

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
    challenge = 'Bearer realm="autoheal"' if settings.auth_token else 'Basic realm="autoheal"'

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if (
            settings.has_credentials
            and not is_page(request.path)  # the page logs people in itself (receiver.ui)
            and request.path not in OPEN_PATHS
        ):
            lockout = request.app[appkeys.LOCKOUT]
            # Refused before the credential is looked at: a right guess must not tell.
            held = lockout.refusing(request, API)
            if held is not None:
                return _too_many(held)
            header = request.headers.get("Authorization")
            if not authorized(settings, header):
                if header:  # a credential was tried (none at all guesses nothing)
                    address = lockout.address(request)
                    locked = await lockout.failed(request.app[appkeys.DATABASE], address, API)
                    if locked is not None:
                        return _too_many(locked)
                return web.json_response(
                    {"error": "unauthorized", "detail": "missing or wrong credentials"},
                    status=401,
                    headers={"WWW-Authenticate": challenge},
                )
        response: web.StreamResponse = await handler(request)
        return response

    return middleware


def _too_many(retry_after: int) -> web.Response:
    return web.json_response(
        {
            "error": "too_many_failed_logins",
            "detail": f"too many wrong credentials from this address: retry in {retry_after} s",
        },
        status=429,
        headers={"Retry-After": str(retry_after)},
    )
