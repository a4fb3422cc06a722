"""The writes of one worker transaction, gathered as each incident's step decides them and
flushed together as a few multi-row statements; the metrics they imply wait for the commit.

A batch of 200 incidents costs about as many statements as one: heal logs go in with one
INSERT, incident updates with one executemany per set of columns, escalations and releases
with one UPDATE each. The flush runs them in the order later ones read earlier ones
(knowledge reads the playbook an attempt ran before the next attempt names another;
notifications read the incident and its last heal log as this transaction leaves them).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from receiver.db import repo
from receiver.domain import (
    EscalationReason,
    HealResult,
    IncidentStatus,
    NoticeEvent,
    Resolved,
    ResolveKind,
)
from receiver.effects import Effects
from receiver.notify.notices import Announcer
from receiver.worker.plan import Plan

log = logging.getLogger(__name__)

NO_LEASE = {"lease_owner": None, "lease_until": None}


@dataclass(slots=True)
class Writes:
    """One transaction's writes: the methods queue them, ``flush`` writes them."""

    owner: str
    now: datetime
    notify: Announcer | None  # None: nobody is told (the knowledge rows are still written)
    # True in the transaction that claimed the incidents, which holds them (row locks on
    # PostgreSQL, the write lock on SQLite): a lease is written only where an action starts,
    # and giving one up is part of the incident's update. False when outcomes are recorded
    # later: a lease is given up only where this replica still holds it.
    claimed: bool = False
    effects: Effects = field(default_factory=Effects)
    _logs: list[dict[str, Any]] = field(default_factory=list)
    _finished: list[dict[str, Any]] = field(default_factory=list)
    _updates: dict[int, dict[str, Any]] = field(default_factory=dict)
    _if_held: dict[int, dict[str, Any]] = field(default_factory=dict)
    _if_status: dict[IncidentStatus, dict[int, dict[str, Any]]] = field(default_factory=dict)
    _escalate: dict[EscalationReason, list[Mapping[str, Any]]] = field(default_factory=dict)
    _resolve: dict[ResolveKind, list[Mapping[str, Any]]] = field(default_factory=dict)
    _release: set[int] = field(default_factory=set)
    _unlock: list[tuple[str, int]] = field(default_factory=list)
    _counts: Counter[tuple[int, bool]] = field(default_factory=Counter)
    _not_healed: list[int] = field(default_factory=list)
    _healed: list[int] = field(default_factory=list)
    _events: dict[NoticeEvent, list[int]] = field(default_factory=dict)
    _quiet: set[int] = field(default_factory=set)  # escalated without a notice
    _quarantine: list[dict[str, Any]] = field(default_factory=list)

    def log(
        self,
        row: Mapping[str, Any],
        plan: Plan,
        result: HealResult,
        reason: str | None = None,
        output: str = "",
        *,
        attempt: int | None = None,
    ) -> int:
        """Queue a heal log for this plan (anything but pending is final at once); its
        position among this batch's logs, which ``flush`` turns into its id."""
        if result is not HealResult.PENDING:
            self.effects.attempts[plan.playbook.name, plan.playbook.action_type, result.value] += 1
        return self.add_log(
            {
                "incident_id": row["id"],
                "playbook_id": plan.playbook_id,
                "action_type": plan.playbook.action_type,
                "action_detail": plan.action_detail,
                "target": plan.target or None,
                "result": result.value,
                "reason": reason,
                "result_output": output,
                "attempt": row["retry_count"] if attempt is None else attempt,
                "created_at": self.now,
                "finished_at": None if result is HealResult.PENDING else self.now,
                "replica": self.owner,
            }
        )

    def add_log(self, values: Mapping[str, Any]) -> int:
        """Queue a heal log as it is; its position among this batch's logs."""
        self._logs.append(dict(values))
        return len(self._logs) - 1

    def finish_log(self, log_id: int, **values: Any) -> None:
        self._finished.append({"id": log_id, **values})

    def update(
        self,
        incident_id: int,
        values: Mapping[str, Any],
        *,
        only_if: IncidentStatus | None = None,
    ) -> None:
        """Queue values for the incident; with ``only_if``, written only while it is still
        in that status (a person's decision races the worker's approval deadline)."""
        if only_if is None:
            self._updates.setdefault(incident_id, {}).update(values)
        else:
            self._if_status.setdefault(only_if, {}).setdefault(incident_id, {}).update(values)

    def update_if_held(self, incident_id: int, values: Mapping[str, Any]) -> None:
        """Apply ``values`` and give up the lease, only while the incident is still healing
        under this owner's lease: a resolve may have closed it meanwhile, or (after a long
        stall) another replica taken it over."""
        self._if_held.setdefault(incident_id, {}).update({**values, **NO_LEASE})

    def release(self, incident_id: int) -> None:
        """This replica is done with the incident for now (clears an expired lease it was
        claimed with, too)."""
        if self.claimed:
            self.update(incident_id, NO_LEASE)
        else:
            self._release.add(incident_id)

    def unlock(self, target: str, incident_id: int) -> None:
        self._unlock.append((target, incident_id))

    def outcome(self, incident_id: int, playbook_id: int, ok: bool) -> None:
        """An attempt's outcome for the playbook's counts (and, failed, for knowledge)."""
        self._counts[playbook_id, ok] += 1
        if not ok:
            self._not_healed.append(incident_id)

    def notice(self, event: NoticeEvent, incident_id: int) -> None:
        """Tell people (an outbox row per channel, written at the flush)."""
        self._events.setdefault(event, []).append(incident_id)

    def escalate(
        self,
        row: Mapping[str, Any],
        reason: EscalationReason,
        playbook_id: int | None = None,
        *,
        announce: bool = True,
    ) -> None:
        """Hand the incident to people (if it is still active), and give up the lease;
        ``announce`` False: counted and logged, but people were already told (its target
        is quarantined)."""
        if playbook_id is not None:
            self.update(row["id"], {"playbook_id": playbook_id})
        self._escalate.setdefault(reason, []).append(row)
        if not announce:
            self._quiet.add(row["id"])
        self.release(row["id"])

    def quarantine(self, row: Mapping[str, Any], plan: Plan, why: str) -> None:
        """Quarantine the plan's target (the row is written at the flush)."""
        self._quarantine.append(
            {
                "target": plan.target,
                "since": self.now,
                "reason": why,
                "incident_id": row["id"],
                "playbook_id": plan.playbook_id,
            }
        )
        self.effects.tell("quarantined", row["id"], reason=f"{plan.target}: {why}")

    def resolve(self, row: Mapping[str, Any], how: ResolveKind = ResolveKind.QUIET) -> None:
        """Resolve an incident: a scheduler's that stayed quiet through its verify window,
        or one that stayed below its playbook's min_occurrences."""
        self._resolve.setdefault(how, []).append(row)
        self.release(row["id"])

    def resolved(self, how: ResolveKind, closed: list[Resolved]) -> None:
        """Incidents a resolve elsewhere in this transaction closed (an alert's resolve, a
        success ping): those a repair healed are knowledge and news, like a quiet window."""
        self.effects.closed(how, closed)
        self._healed.extend(r.id for r in closed if r.healed)

    def flush_outcomes(self, conn: Connection) -> None:
        """Write the outcomes queued so far (playbook counts, knowledge of failures) now:
        the next plan in this batch may order playbooks by them."""
        repo.outcomes.not_healed(conn, self._not_healed, self.now)
        repo.playbooks.count(conn, self._counts)
        self._not_healed.clear()
        self._counts.clear()

    def flush(self, conn: Connection) -> list[int]:
        """Write everything queued; the ids of the heal logs queued, in order."""
        now = self.now
        for how, rows in self._resolve.items():
            # Closed with nothing run while its alert may still notify (silenced now, below
            # its threshold): a later notification is a new incident.
            forget = how is not ResolveKind.QUIET
            self.resolved(how, repo.incidents.resolve(conn, rows, now, forget=forget))
        repo.outcomes.healed(conn, self.notify, self._healed, now)
        self._healed.clear()
        self.flush_outcomes(conn)
        repo.heal_logs.finish(conn, self._finished)
        log_ids = repo.heal_logs.add(conn, self._logs)
        repo.incidents.update_many(conn, self._updates.items())
        for status, changes in self._if_status.items():
            repo.incidents.update_many(conn, changes.items(), only_if_status=status.value)
        repo.incidents.update_many(
            conn,
            self._if_held.items(),
            only_if_status=IncidentStatus.HEALING.value,
            held_by=self.owner,
        )
        for reason, rows in self._escalate.items():
            self.escalated(reason, repo.incidents.escalate(conn, rows, reason, now))
        repo.quarantine.trip(conn, self._quarantine)
        repo.guards.unlock_targets(conn, self._unlock)
        repo.incidents.release(conn, self._release, self.owner)
        if self.notify is not None:
            for event, ids in self._events.items():
                self.notify(conn, event, ids, now)
        self._events.clear()
        return log_ids

    def escalated(self, reason: EscalationReason, incident_ids: list[int]) -> None:
        """Incidents this transaction escalated (here, or where ingest opened them so):
        counted, logged, announced."""
        if not incident_ids:
            return
        self.effects.escalations[reason] += len(incident_ids)
        told = [i for i in incident_ids if i not in self._quiet]
        if told:
            self._events.setdefault(NoticeEvent.ESCALATED, []).extend(told)
        for incident_id in incident_ids:
            self.effects.tell("escalated", incident_id, reason=reason.value)
