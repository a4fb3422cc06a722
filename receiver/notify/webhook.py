"""A generic JSON webhook: one POST per message, the notices as JSON.

Body: ``{"event": "escalated", "summary": "...", "notices": [ {...}, ... ]}``; ``event`` is
``summary`` when a storm's notices come batched. Optional bearer token.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import aiohttp

from receiver.notify.base import Notice, NotifyError
from receiver.notify.text import headline, summary_line


class WebhookNotifier:
    name: ClassVar[str] = "webhook"

    def __init__(self, url: str, token: str | None, timeout: float) -> None:
        self._url = url
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout))

    async def send(self, notices: Sequence[Notice]) -> None:
        single = len(notices) == 1
        body = {
            "event": notices[0].event if single else "summary",
            "summary": headline(notices[0]) if single else summary_line(notices),
            "notices": [n.to_json() for n in notices],
        }
        try:
            async with self._session.post(self._url, json=body, headers=self._headers) as resp:
                status = resp.status
                retry_after = resp.headers.get("Retry-After", "")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise NotifyError(
                f"webhook unreachable: {type(exc).__name__}", retryable=True
            ) from None
        if 200 <= status < 300:
            return
        wait = float(retry_after) if retry_after.isdigit() else None
        raise NotifyError(
            f"webhook answered {status}", retryable=status == 429 or status >= 500, retry_after=wait
        )

    async def close(self) -> None:
        await self._session.close()
