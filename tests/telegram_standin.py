"""A local stand-in for the Telegram Bot API (api.telegram.org cannot be reached from here).

The real client code talks to it through ``telegram_base_url``. It records every request and
answers from a script: ``fail_next(429, retry_after=1)``, ``fail_next(502)``, ... then 200.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Request:
    path: str
    body: dict[str, Any]
    at: float  # monotonic


@dataclass
class TelegramStandIn:
    token: str
    requests: list[Request] = field(default_factory=list)
    script: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    runner: web.AppRunner | None = None
    port: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def delivered(self) -> list[dict[str, Any]]:
        """Bodies of the sendMessage calls that were answered ok."""
        return [
            r.body for r in self.requests if r.path.endswith("/sendMessage") and r.body.get("_ok")
        ]

    def fail_next(self, status: int, *, retry_after: int | None = None, times: int = 1) -> None:
        body: dict[str, Any] = {
            "ok": False,
            "error_code": status,
            "description": f"status {status}",
        }
        if retry_after is not None:
            body["parameters"] = {"retry_after": retry_after}
            body["description"] = f"Too Many Requests: retry after {retry_after}"
        self.script.extend([(status, body)] * times)

    async def _send(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.json_response(
                {"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401
            )
        body = await request.json()
        entry = Request(request.path, body, time.monotonic())
        self.requests.append(entry)
        if self.script:
            status, answer = self.script.pop(0)
            return web.json_response(answer, status=status)
        body["_ok"] = True
        result = {
            "message_id": len(self.requests),
            "chat": {"id": body.get("chat_id")},
            "text": body.get("text"),
        }
        return web.json_response({"ok": True, "result": result})

    @property
    def answers(self) -> list[str]:
        """What answerCallbackQuery told people who pressed a button."""
        return [r.body["text"] for r in self.requests if r.path.endswith("/answerCallbackQuery")]

    async def _answer(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.json_response({"ok": False, "error_code": 401}, status=401)
        self.requests.append(Request(request.path, await request.json(), time.monotonic()))
        return web.json_response({"ok": True, "result": True})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/bot{token}/sendMessage", self._send)
        app.router.add_post("/bot{token}/answerCallbackQuery", self._answer)
        self.runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
