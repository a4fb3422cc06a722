"""Telegram's webhook: Approve / Deny button presses, checked against the secret, the
chat, the approvers and the attempt the button was made for."""

from __future__ import annotations

import hmac
import logging
import re

from aiohttp import web

from receiver import appkeys, openapi
from receiver.api.http import json_response, parse, problem
from receiver.api.incidents import record_decision
from receiver.approval import NotAwaiting
from receiver.config import Settings
from receiver.notify.base import NotifyError
from receiver.openapi import documented
from receiver.payloads import (
    TelegramCallback,
    TelegramUpdate,
)

log = logging.getLogger(__name__)
routes = web.RouteTableDef()


@routes.post("/api/v1/telegram/updates")
@documented(
    summary="Telegram's webhook: approval button presses (its secret-token header)",
    body=TelegramUpdate,
    public=True,
    extra_headers=("X-Telegram-Bot-Api-Secret-Token",),
    responses={
        200: openapi.TelegramAnswer,
        401: openapi.Problem,
        404: openapi.Problem,
        503: openapi.Problem,
    },
    tag="approval",
)
async def telegram_updates(request: web.Request) -> web.Response:
    """Telegram's webhook (setWebhook with secret_token): approval button presses. Not behind
    the bearer token (Telegram cannot send it); the secret header is checked instead, and
    only the configured chat and approvers may decide."""
    settings = request.app[appkeys.SETTINGS]
    telegram = request.app.get(appkeys.TELEGRAM)
    secret = settings.telegram_webhook_secret
    if secret is None or telegram is None:
        raise problem(404, "not_found", "Telegram updates are not enabled")
    given = request.headers.get("X-Telegram-Bot-Api-Secret-Token", "")
    if not hmac.compare_digest(given.encode(), secret.get_secret_value().encode()):
        return json_response({"error": "unauthorized", "detail": "wrong secret token"}, 401)
    update = await parse(request, TelegramUpdate)
    query = update.callback_query
    if query is None:
        return json_response({"status": "ignored"})  # not a button press
    answer = _refusal(settings, query)
    if answer is None:
        action, incident, attempt = query.data.split(":")
        who = f"{query.sender.username or query.sender.id} (telegram {query.sender.id})"
        approve = action == "approve"
        try:
            await record_decision(request.app, int(incident), approve, who, int(attempt))
            answer = f"incident {incident}: {'approved' if approve else 'denied'}"
        except NotAwaiting:
            answer = f"incident {incident} is no longer waiting for this decision"
    else:
        log.warning(
            "telegram: refused a button press from user %s in chat %s: %s",
            query.sender.id,
            query.chat_id,
            answer,
        )
    try:
        await telegram.answer_callback(query.id, answer)
    except NotifyError as exc:
        log.warning("telegram: could not answer the button press: %s", exc)
    return json_response({"status": "ok", "answer": answer})


_CALLBACK = re.compile(r"(approve|deny):(\d{1,10}):\d{1,4}")


def _refusal(settings: Settings, query: TelegramCallback) -> str | None:
    """Why a button press may not decide, or None when it may."""
    if query.chat_id is None or str(query.chat_id) != settings.telegram_chat_id:
        return "not allowed from this chat"
    if query.sender.id not in settings.approver_ids:
        return "you are not an approver"
    button = _CALLBACK.fullmatch(query.data)
    if button is None or not 0 < int(button[2]) < 2**31:  # beyond the id column's range
        return "unknown button"
    return None
