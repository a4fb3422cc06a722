"""Prometheus' HTTP API, read side: one number from an instant query.

A playbook's blast radius may be a fraction of a fleet whose size Prometheus knows
(``fleet_query: count(up{job="db"})``). The query's value: a scalar, or the sum of a
vector's samples (one sample is the usual case). None: Prometheus could not be asked, or
the query gave nothing to count.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import aiohttp

from receiver.config import Settings

log = logging.getLogger(__name__)

TIMEOUT = 3.0


class PrometheusAPI:
    def __init__(self, url: str, timeout: float = TIMEOUT) -> None:
        self.url = url.rstrip("/")
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def of(cls, settings: Settings) -> PrometheusAPI | None:
        return cls(settings.prometheus_url) if settings.prometheus_url else None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def number(self, query: str) -> float | None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout)
            )
        try:
            async with self._session.get(
                f"{self.url}/api/v1/query", params={"query": query}
            ) as resp:
                body: Any = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("prometheus %s: query failed: %s", self.url, type(exc).__name__)
            return None
        if not isinstance(body, dict) or body.get("status") != "success":
            log.warning("prometheus %s: query %r refused: %s", self.url, query, str(body)[:200])
            return None
        data = body.get("data") or {}
        result: Any = data.get("result")
        try:
            if data.get("resultType") == "scalar":
                value = float(result[1])
            elif data.get("resultType") == "vector" and result:
                value = sum(float(sample["value"][1]) for sample in result)
            else:
                return None
        except (TypeError, ValueError, KeyError, IndexError):
            return None
        return value if math.isfinite(value) else None
