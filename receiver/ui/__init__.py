"""The page for the people on call, at /ui: server-rendered (Jinja2 through aiohttp-jinja2,
autoescaped), no front-end build, usable with JavaScript off (a small script refreshes the
live pages when it is on), behind a login with a signed session cookie and CSRF tokens,
served with a strict Content-Security-Policy."""

from __future__ import annotations

from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web
from aiohttp.typedefs import Handler

from receiver.config import Settings
from receiver.ui.session import Sessions
from receiver.ui.views import SESSIONS, routes

HERE = Path(__file__).parent
PREFIX = "/ui"

# Only this origin's own files; no inline script or style, no framing, forms post here only.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:  # redirects and errors carry them too
        if request.path.startswith(PREFIX):
            exc.headers.update(HEADERS)
        raise
    if request.path.startswith(PREFIX):
        response.headers.update(HEADERS)
    return response


def setup_ui(app: web.Application, settings: Settings) -> None:
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
        undefined=jinja2.StrictUndefined,
    )
    env.filters["when"] = _when
    app[SESSIONS] = Sessions(settings)
    app.add_routes(routes)
    app.router.add_static(f"{PREFIX}/static", HERE / "static", append_version=True)
    app.middlewares.append(security_headers)


def _when(value: object) -> str:
    from datetime import datetime

    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S UTC")
    return "" if value is None else str(value)
