"""Alertmanager's API v2, read side: which alerts are firing there now.

The worker asks it before acting (Stage 8): whether an alert that blocks actions fires
(``blocked_by``: ``GET /api/v2/alerts?active=true&silenced=false&inhibited=false&filter=…``)
and whether the alert of an incident that waited is still active, or a person silenced it
meanwhile. Every configured peer of an HA cluster is asked and the answers merged by
fingerprint (a peer that missed an alert must not hide it); one peer answering is enough.
No peer answering is ``None``: the caller decides whether that fails closed or open.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from receiver.config import Settings

log = logging.getLogger(__name__)

TIMEOUT = 3.0  # seconds per peer: the worker waits for this before deciding


@dataclass(frozen=True, slots=True)
class AlertState:
    """An alert as Alertmanager holds it: ``active`` (notified), ``suppressed`` (silenced or
    inhibited), or ``unprocessed``; the silences and alerts that suppress it."""

    fingerprint: str
    state: str
    labels: Mapping[str, str]
    silenced_by: tuple[str, ...] = ()
    inhibited_by: tuple[str, ...] = ()
    # As the API gave it (kept, not copied: only a truncated webhook's fetch reads it).
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, alert: Mapping[str, Any]) -> AlertState:
        status = alert.get("status") or {}
        return cls(
            raw=alert,
            fingerprint=str(alert.get("fingerprint", "")),
            state=str(status.get("state", "")),
            labels={str(k): str(v) for k, v in (alert.get("labels") or {}).items()},
            silenced_by=tuple(status.get("silencedBy") or ()),
            inhibited_by=tuple(status.get("inhibitedBy") or ()),
        )


class AlertmanagerAPI:
    """A client for every configured peer; ``running`` owns its HTTP session."""

    def __init__(self, urls: Sequence[str], token: str | None, timeout: float = TIMEOUT):
        self.urls = tuple(urls)
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def of(cls, settings: Settings) -> AlertmanagerAPI | None:
        if not settings.alertmanager_urls:
            return None
        token = settings.alertmanager_token
        return cls(settings.alertmanager_urls, token.get_secret_value() if token else None)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def alerts(
        self,
        matchers: Iterable[str],
        *,
        silenced: bool,
        inhibited: bool,
    ) -> list[AlertState] | None:
        """The active alerts matching every matcher (Alertmanager's syntax), from every
        peer, merged by fingerprint; with ``silenced``/``inhibited`` those suppressed too.
        None: no peer answered."""
        params = [
            ("active", "true"),
            ("silenced", str(silenced).lower()),
            ("inhibited", str(inhibited).lower()),
            *(("filter", m) for m in matchers),
        ]
        answers = await asyncio.gather(*(self._get(url, params) for url in self.urls))
        found: dict[str, AlertState] = {}
        answered = False
        for answer in answers:
            if answer is None:
                continue
            answered = True
            for alert in answer:
                state = AlertState.of(alert)
                # An alert one peer holds active wins over the same alert suppressed on
                # another (it has not seen the silence yet): the fresher view is active.
                if state.fingerprint not in found or state.state == "active":
                    found[state.fingerprint] = state
        return list(found.values()) if answered else None

    async def _get(self, base: str, params: list[tuple[str, str]]) -> list[Any] | None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout)
            )
        try:
            async with self._session.get(
                f"{base}/api/v2/alerts", params=params, headers=self._headers
            ) as resp:
                if resp.status != 200:
                    log.warning("alertmanager %s: alerts query answered %d", base, resp.status)
                    return None
                body = await resp.json()
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("alertmanager %s: alerts query failed: %s", base, type(exc).__name__)
            return None
        return body if isinstance(body, list) else None


def as_webhook_alert(state: AlertState) -> dict[str, Any]:
    """An active alert from the API in the webhook's shape: the truncated part of a group is
    stored as if it had come with the webhook."""
    alert = state.raw
    return {
        "status": "firing",
        "labels": alert.get("labels") or {},
        "annotations": alert.get("annotations") or {},
        "startsAt": alert.get("startsAt"),
        "endsAt": alert.get("endsAt"),
        "generatorURL": alert.get("generatorURL") or "",
        "fingerprint": alert.get("fingerprint"),
    }
