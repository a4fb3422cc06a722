"""Telegram: Bot API ``sendMessage`` over aiohttp, HTML parse mode, every value escaped.

The Bot API puts the token in the URL path, so no URL, exception text or response body
leaves this module without the token replaced.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any, ClassVar

import aiohttp

from receiver.domain import NoticeEvent
from receiver.notify.base import Notice, NotifyError
from receiver.notify.text import facts, headline, summary_line

LIMIT = 4096  # Telegram's message length
LISTED = 10  # incidents named in a storm summary


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _link(url: str | None, label: str) -> str | None:
    if not url or not url.startswith(("http://", "https://")):
        return None
    return f'<a href="{_e(url)}">{_e(label)}</a>'


def render(n: Notice) -> str:
    lines = [f"<b>{_e(headline(n))}</b>", _e(n.message[:600])]
    lines += [_e(line) for line in facts(n)]
    if n.note:
        lines.append(f"<i>{_e(n.note[:1500])}</i>")
    links = [
        _link(n.generator_url, "alert source"),
        *(_link(url, name) for name, url in (n.links or {}).items()),
        _link(n.incident_url, f"incident #{n.incident_id}"),
    ]
    lines.append(" · ".join(link for link in links if link))
    return "\n".join(line for line in lines if line)[:LIMIT]


def render_summary(notices: Sequence[Notice]) -> str:
    lines = [f"<b>{_e(len(notices))} notifications</b>: {_e(summary_line(notices))}"]
    for n in notices[:LISTED]:
        why = f" ({_e(n.reason)})" if n.reason else ""
        if not n.incident_id:  # about autoheal itself
            lines.append(f"{_e(headline(n))}: {_e(n.message[:200])}")
            continue
        link = _link(n.incident_url, f"#{n.incident_id}") or _e(f"#{n.incident_id}")
        lines.append(f"{link} {_e(headline(n))}{why}")
    if len(notices) > LISTED:
        lines.append(_e(f"… and {len(notices) - LISTED} more"))
    return "\n".join(lines)[:LIMIT]


class TelegramNotifier:
    name: ClassVar[str] = "telegram"

    def __init__(self, token: str, chat_id: str, base_url: str, timeout: float) -> None:
        self._token = token
        self._chat_id = chat_id
        self._base = base_url.rstrip("/")
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout))

    def _redact(self, text: str) -> str:
        return text.replace(self._token, "<token>") if self._token else text

    async def send(self, notices: Sequence[Notice]) -> None:
        text = render(notices[0]) if len(notices) == 1 else render_summary(notices)
        body: dict[str, Any] = {
            "chat_id": self._chat_id,
            "text": text,
            "parse_mode": "HTML",
            "disable_web_page_preview": True,
        }
        first = notices[0]
        if len(notices) == 1 and first.event == NoticeEvent.APPROVAL and first.approval_attempt:
            ref = f"{first.incident_id}:{first.approval_attempt}"
            body["reply_markup"] = {
                "inline_keyboard": [
                    [
                        {"text": "Approve", "callback_data": f"approve:{ref}"},
                        {"text": "Deny", "callback_data": f"deny:{ref}"},
                    ]
                ]
            }
        await self._call("sendMessage", body)

    async def answer_callback(self, callback_id: str, text: str) -> None:
        """Tell the person who pressed a button what came of it (shown in their client)."""
        await self._call("answerCallbackQuery", {"callback_query_id": callback_id, "text": text})

    async def _call(self, method: str, body: dict[str, Any]) -> None:
        url = f"{self._base}/bot{self._token}/{method}"
        try:
            async with self._session.post(url, json=body) as resp:
                status = resp.status
                try:
                    answer: Any = await resp.json(content_type=None)
                except (ValueError, aiohttp.ClientError):
                    answer = {}
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise NotifyError(
                self._redact(f"telegram unreachable: {type(exc).__name__}: {exc}"), retryable=True
            ) from None
        if 200 <= status < 300 and isinstance(answer, dict) and answer.get("ok"):
            return
        answer = answer if isinstance(answer, dict) else {}
        detail = self._redact(f"telegram {status}: {answer.get('description', '')}"[:300])
        if status == 429:
            retry_after = (answer.get("parameters") or {}).get("retry_after")
            raise NotifyError(
                detail,
                retryable=True,
                retry_after=float(retry_after) if isinstance(retry_after, int | float) else None,
            )
        raise NotifyError(detail, retryable=status >= 500)

    async def close(self) -> None:
        await self._session.close()
