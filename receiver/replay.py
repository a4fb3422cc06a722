"""``autoheal replay``: what the worker would decide for a payload, through the same plan
and rules (``worker.plan.make_plan``, ``worker.decide``), nothing run and nothing stored.

What was learned in the store orders several matching playbooks as it would in the worker,
when the store is there to read (an SQLite file that does not exist is not created). The
store's guard rows (budget, target locks, cooldowns) are not read: the answer is what the
rules decide for this payload with none of them held.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from receiver.actions import ACTIONS, Action
from receiver.catalog import Catalog
from receiver.classify import Classifier
from receiver.config import Settings
from receiver.domain import EscalationReason, IncidentStatus, Signal
from receiver.knowledge import Record
from receiver.playbooks import Playbook, candidates
from receiver.worker.decide import decide
from receiver.worker.decisions import (
    AskApproval,
    Case,
    Decision,
    Defer,
    Escalate,
    Facts,
    Incident,
    Policy,
    Start,
)
from receiver.worker.plan import make_plan

log = logging.getLogger(__name__)


def replay(
    settings: Settings,
    playbooks: Sequence[Playbook],
    classifier: Classifier,
    signals: Sequence[Signal],
    actions: Mapping[str, Action] = ACTIONS,
) -> list[str]:
    """One line per signal, and one per decision: what would happen to it now."""
    now = datetime.now(UTC)
    url = make_url(settings.database_url)
    # An SQLite file that is not there is not created by looking.
    there = url.get_backend_name() != "sqlite" or Path(url.database or "").is_file()
    ids = {pb.name: i for i, pb in enumerate(playbooks, 1)}
    learned: dict[tuple[str, str | None], dict[int, Record]] = {}
    if there:
        ids, learned = asyncio.run(_learned(settings, playbooks, signals, ids))
    catalog = Catalog(tuple(playbooks), classifier, ids, {i: n for n, i in ids.items()})
    lines = []
    for s in signals:
        state = "firing" if s.firing else "resolved"
        lines.append(
            f"{s.task_name} ({state}) -> {s.error_type.value}, severity {s.severity.value}"
        )
        if not s.firing:
            lines.append("  resolves its incident")
            continue
        found = candidates(catalog.playbooks, s)
        row = {"labels": s.labels, "annotations": s.annotations}
        records = learned.get((s.error_type.value, s.signature), {})
        plan = make_plan(catalog, actions, row, settings.param_scope(), found, records)
        incident = Incident(0, s.source.value, IncidentStatus.OPEN, 0, now)
        [d] = decide([Case(incident, plan)], Policy.of(settings), Facts(now))
        lines.append("  " + _words(d, plan.playbook.name if plan else None))
    return lines


def _words(d: Decision, playbook: str | None) -> str:
    named = f"playbook {playbook!r}: " if playbook else ""
    if isinstance(d, Start):
        return f"{named}would run {d.plan.action_detail} (attempt {d.attempt})"
    if isinstance(d, AskApproval):
        return f"{named}would ask for approval to run {d.plan.action_detail}"
    if isinstance(d, Escalate):
        if d.reason is EscalationReason.NO_PLAYBOOK:
            return "no playbook matches: would escalate (no_playbook)"
        why = f" ({d.note.output})" if d.note is not None else ""
        return f"{named}would escalate ({d.reason.value}){why}"
    if isinstance(d, Defer):
        return f"{named}would wait: {d.output}"
    return f"{named}{type(d).__name__.lower()}"


async def _learned(
    settings: Settings,
    playbooks: Sequence[Playbook],
    signals: Sequence[Signal],
    ids: dict[str, int],
) -> tuple[dict[str, int], dict[tuple[str, str | None], dict[int, Record]]]:
    """The playbooks' ids and what was learned for each signal's fault, from the store;
    ``ids`` and nothing learned when it cannot be read."""
    from receiver.db import repo
    from receiver.db.engine import open_database
    from receiver.db.schema import playbooks as table

    db = open_database(settings.database_url)
    learned: dict[tuple[str, str | None], dict[int, Record]] = {}
    try:
        async with asyncio.timeout(5), db.reading() as conn:
            stored = {n: i for n, i in (await conn.execute(select(table.c.name, table.c.id))).all()}
            # Playbooks not synced yet get ids past the stored ones: nothing learned is theirs.
            top = max(stored.values(), default=0)
            fresh = (pb.name for pb in playbooks if pb.name not in stored)
            ids = {
                **{n: stored[n] for n in ids if n in stored},
                **dict(zip(fresh, itertools.count(top + 1))),
            }
            for key in {(s.error_type.value, s.signature) for s in signals if s.firing}:
                learned[key] = await conn.run_sync(repo.knowledge.records_for, *key)
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        log.warning("store not read (%s): learned rates not used", type(exc).__name__)
        return ids, {}
    finally:
        await db.dispose()
    return ids, learned
