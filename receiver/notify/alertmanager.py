"""Escalations handed back to Alertmanager, so its routes, silences and inhibitions reach
on-call: one ``AutoHealEscalated`` alert per escalated incident.

Store-driven and idempotent: each round posts every escalated incident with an ``endsAt`` a
few rounds ahead (so an alert outlives a missed round but not a dead autoheal), and, for a
few rounds, the incidents that were escalated and have since resolved, with ``endsAt`` at
their resolve time. A round runs every ``alertmanager_repost_seconds`` and as soon as an
escalation is committed on this replica. Several replicas posting the same alerts is
harmless: Alertmanager identifies an alert by its labels.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from sqlalchemy.ext.asyncio import AsyncConnection

from receiver import evidence
from receiver.background import repeat, tasks
from receiver.config import Settings
from receiver.db import repo
from receiver.db.engine import Database
from receiver.domain import ESCALATION_ALERTNAME
from receiver.notify.base import reason_words

log = logging.getLogger(__name__)

ROUNDS_AHEAD = 4  # endsAt this many rounds after each post
RESOLVED_ROUNDS = 3  # a resolve is posted this many rounds (one lost post is no matter)
LIMIT = 5000  # escalated incidents per round, newest first
SETTLE = 0.2  # seconds between a wake-up and the round it triggers
EVIDENCE_CHUNK = 200  # incidents whose captures are read at once (each up to ~64 KiB)
_SEVERITY = {"P1": "critical", "P2": "warning", "P3": "info"}


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def escalation_alert(
    row: Mapping[str, Any], incident_base_url: str, ends_at: datetime, before: str | None = None
) -> dict[str, Any]:
    """The Alertmanager v2 alert for one incident (labels bounded to what routes need);
    ``before``: what the evidence said of the target before the repair, if it was taken."""
    reason = row["escalation_reason"] or "unknown"
    labels = {
        "alertname": ESCALATION_ALERTNAME,
        "incident_id": str(row["id"]),
        "error_type": row["error_type"],
        "reason": reason,
        "severity": _SEVERITY.get(row["severity"], "warning"),
        "original_alertname": row["task_name"],
        "source": row["source"],
    }
    if row.get("playbook_name"):
        labels["playbook"] = row["playbook_name"]
    if row.get("target"):
        labels["target"] = row["target"]
    url = f"{incident_base_url}/{row['id']}"
    tried = (
        f"{row['retry_count']} attempt(s) with playbook {row['playbook_name']!r}"
        if row.get("playbook_name") and row["retry_count"]
        else "no repair was run"
    )
    description = f"{row['error_message'][:1000]}\nTried: {tried}. Stopped: {reason}."
    if before:
        description += f"\nBefore the repair: {before}"
    if row.get("escalation_detail"):
        description += f"\nNext step: {row['escalation_detail']}"
    annotations = {
        "summary": f"autoheal could not heal {row['task_name']}: {reason_words(reason)}",
        "description": description,
        "incident_url": url,
    }
    if before:
        annotations["evidence"] = before
    return {
        "labels": labels,
        "annotations": annotations,
        "startsAt": _iso(row["created_at"]),
        "endsAt": _iso(ends_at),
        "generatorURL": url,
    }


class Escalator:
    def __init__(self, settings: Settings, db: Database) -> None:
        self.urls = settings.alertmanager_urls
        self.interval = settings.alertmanager_repost_seconds
        self.incident_base_url = settings.incident_base_url
        self.db = db
        token = settings.alertmanager_token
        self._headers = {"Authorization": f"Bearer {token.get_secret_value()}"} if token else {}
        self._wake = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        # The evidence summary of each incident posted, by (id, when its last action
        # started): read once per action, not every round (a capture can be 64 KiB; a round
        # posts up to 5,000 incidents).
        self._before: dict[tuple[int, datetime | None], str | None] = {}

    def wake(self) -> None:
        """An escalation was committed: post now rather than at the next round."""
        self._wake.set()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Escalator]:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        loop = repeat(
            self._round,
            every=self.interval,
            log=log,
            failed="alertmanager: escalation round failed; next round retries",
            wake=self._wake,
            # Woken from inside the escalating transaction: let it commit first (a round
            # that still misses it is followed by the next).
            settle=SETTLE,
        )
        try:
            async with tasks(escalator=loop):
                yield self
        finally:
            await self._session.close()

    async def _round(self) -> None:
        await self.post_round()

    async def post_round(self) -> int:
        """Post the current escalations and recent resolves; the alerts posted."""
        now = datetime.now(UTC)
        since = now - timedelta(seconds=self.interval * RESOLVED_ROUNDS)
        async with self.db.reading() as conn:
            escalated, ended = await repo.escalations(conn, since, LIMIT)
            before = await self._evidence(conn, escalated + ended)
        ends = now + timedelta(seconds=self.interval * ROUNDS_AHEAD)
        base = self.incident_base_url
        alerts = [escalation_alert(r, base, ends, before.get(r["id"])) for r in escalated]
        alerts += [escalation_alert(r, base, r["resolved_at"], before.get(r["id"])) for r in ended]
        if alerts:
            await asyncio.gather(*(self._post(url, alerts) for url in self.urls))
        return len(alerts)

    async def _evidence(
        self, conn: AsyncConnection, rows: list[dict[str, Any]]
    ) -> dict[int, str | None]:
        """What the evidence said before each incident's last repair; read from the heal
        logs only for incidents not posted before as they are now."""
        keys = {(r["id"], r["last_action_at"]) for r in rows}
        kept = {k: v for k, v in self._before.items() if k in keys}
        missing = [k for k in keys if k not in kept]
        for start in range(0, len(missing), EVIDENCE_CHUNK):
            chunk = missing[start : start + EVIDENCE_CHUNK]
            found = await repo.heal_logs.last_evidence(conn, [i for i, _ in chunk])
            for key in chunk:
                kept[key] = evidence.summary(found.get(key[0]))
        self._before = kept
        return {i: text for (i, _), text in kept.items()}

    async def _post(self, base: str, alerts: list[dict[str, Any]]) -> None:
        from receiver.retry import TransientError, with_retries

        assert self._session is not None
        session = self._session

        async def post() -> None:
            async with session.post(
                f"{base}/api/v2/alerts", json=alerts, headers=self._headers
            ) as resp:
                if resp.status >= 500:
                    raise TransientError(f"alertmanager answered {resp.status}")
                if resp.status >= 300:
                    # Quoted (no control character reaches the log) and short; the log
                    # formatter redacts any credential an error page echoes.
                    text = (await resp.text(errors="replace"))[:200]
                    raise ValueError(f"alertmanager answered {resp.status}: {text!r}")

        try:
            await with_retries(post, within=8)
        except (aiohttp.ClientError, TimeoutError, TransientError, ValueError) as exc:
            log.warning("alertmanager %s: escalations not posted: %s", base, exc)
