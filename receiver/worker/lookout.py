"""Lookout: what Alertmanager says, asked just before a batch is claimed (the rules are pure
and run inside a transaction; the network is asked here, outside it).

- Blocking alerts: for every blocked_by matcher set (the settings' and each playbook's), the
  alerts firing now, neither silenced nor inhibited; None when no peer answered. Kept for
  ``TTL`` seconds: a storm's polls do not each ask again.
- Re-check: for the due alert incidents that waited, their alert in Alertmanager now (one
  query per alertname, silenced and inhibited alerts included); None: no longer active.
- Verify (``cleared``, every second, not only when something is due): the alert incidents
  under verification whose alert Alertmanager no longer holds, so the repair is judged held
  at once rather than at the group's next group_interval (or never, for a silenced alert).
  Only an alert this replica saw there (while its incident was open, healing or verifying:
  watched from the start, so a repair that clears the alert within a second is not missed)
  counts as cleared: an incident whose alert was never in this Alertmanager waits for its
  webhook, as before.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any, TypeVar

from receiver.alertmanager_api import AlertmanagerAPI, AlertState
from receiver.catalog import Catalog
from receiver.db import repo
from receiver.db.engine import Database
from receiver.domain import IncidentStatus
from receiver.matchers import Matcher, MatchOp, matcher_key
from receiver.prometheus_api import PrometheusAPI
from receiver.worker.decisions import Policy

TTL = 2.0  # seconds a blocking answer is reused
FLEET_TTL = 30.0  # seconds a fleet size is reused
T = TypeVar("T")
WATCHED = 1000  # alert incidents watched per round


@dataclass(frozen=True, slots=True)
class Seen:
    blocking: Mapping[str, tuple[tuple[str, str], ...] | None] = field(default_factory=dict)
    alerts: Mapping[int, AlertState | None] = field(default_factory=dict)
    fleet: Mapping[int, float] = field(default_factory=dict)  # playbook id -> fleet size


class Lookout:
    def __init__(
        self,
        api: AlertmanagerAPI | None,
        policy: Policy,
        recheck: bool,
        prometheus: PrometheusAPI | None = None,
    ) -> None:
        self.api = api
        self.prometheus = prometheus
        self.policy = policy
        self.recheck = recheck and api is not None
        # Answers kept for a while, by what was asked: (when, answer).
        self._kept: dict[tuple[str, str], tuple[float, Any]] = {}
        self._seen: set[int] = set()  # watched incidents whose alert was seen there

    async def _kept_for(
        self, kind: str, key: str, ttl: float, ask: Callable[[], Awaitable[T]]
    ) -> T:
        """The answer to ``ask``, asked again only once ``ttl`` seconds have passed."""
        clock = time.monotonic()
        kept = self._kept.get((kind, key))
        if kept is None or clock - kept[0] >= ttl:
            kept = (clock, await ask())
            self._kept[kind, key] = kept
        answer: T = kept[1]
        return answer

    async def look(self, db: Database, catalog: Catalog, now: datetime, limit: int) -> Seen:
        fleet = await self._fleet_now(catalog)
        if self.api is None:
            return Seen(fleet=fleet)
        blocking = await self._blocking_now(catalog)
        alerts: dict[int, AlertState | None] = {}
        if self.recheck:
            async with db.reading() as conn:
                waited = await repo.incidents.waited_alerts(conn, now, limit)
            alerts = await self._alerts_of(waited)
        return Seen(blocking, alerts, fleet)

    async def _fleet_now(self, catalog: Catalog) -> dict[int, float]:
        """Each playbook's fleet size (fleet_query), asked of Prometheus at most every
        FLEET_TTL seconds; a playbook whose query gave nothing is left out (its
        max_concurrent_targets alone applies)."""
        if self.prometheus is None:
            return {}
        out: dict[int, float] = {}
        for p in catalog.playbooks:
            query = p.brakes.fleet_query
            if not query or p.name not in catalog.ids:
                continue
            size = await self._kept_for(
                "fleet", query, FLEET_TTL, partial(self.prometheus.number, query)
            )
            if size is not None:
                out[catalog.ids[p.name]] = size
        return out

    async def _blocking_now(
        self, catalog: Catalog
    ) -> dict[str, tuple[tuple[str, str], ...] | None]:
        every = [self.policy.blocked_by, *(p.brakes.blocked_by for p in catalog.playbooks)]
        sets = {matcher_key(m): m for m in every if m}
        return {
            key: await self._kept_for("blocking", key, TTL, partial(self._firing, matchers))
            for key, matchers in sets.items()
        }

    async def _firing(self, matchers: tuple[Matcher, ...]) -> tuple[tuple[str, str], ...] | None:
        """(fingerprint, alertname) of the alerts matching, firing unsuppressed now."""
        assert self.api is not None
        found = await self.api.alerts([str(m) for m in matchers], silenced=False, inhibited=False)
        if found is None:
            return None
        return tuple(
            (a.fingerprint, a.labels.get("alertname", a.fingerprint))
            for a in found
            if a.state == "active"
        )

    async def cleared(self, db: Database) -> list[Any]:
        """The verifying alert incidents whose alert, seen in Alertmanager since they
        opened, is no longer there (their rows: id, source)."""
        if not self.recheck:
            return []
        async with db.reading() as conn:
            rows = await repo.incidents.watched_alerts(conn, WATCHED)
        states = await self._alerts_of(rows) if rows else {}
        gone = []
        for row in rows:
            if row.id not in states:
                continue  # not asked (no peer answered)
            if states[row.id] is not None:
                self._seen.add(row.id)
            elif row.id in self._seen and row.status == IncidentStatus.VERIFYING.value:
                gone.append(row)
        self._seen &= {r.id for r in rows} - {r.id for r in gone}
        return gone

    async def _alerts_of(self, waited: list[Any]) -> dict[int, AlertState | None]:
        """Their alerts now, asked once per alertname; an alertname no peer answered for
        is left out (not asked: the rules go on as before)."""
        assert self.api is not None
        by_name: dict[str, list[Any]] = {}
        for row in waited:
            name = (row.labels or {}).get("alertname")
            if name:
                by_name.setdefault(name, []).append(row)
        api = self.api
        answers = await asyncio.gather(
            *(
                api.alerts(
                    [str(Matcher("alertname", MatchOp.EQ, name))], silenced=True, inhibited=True
                )
                for name in by_name
            )
        )
        out: dict[int, AlertState | None] = {}
        for rows, found in zip(by_name.values(), answers, strict=True):
            if found is None:
                continue
            by_fp = {a.fingerprint: a for a in found}
            for row in rows:
                out[row.id] = by_fp.get(row.fingerprint)
        return out
