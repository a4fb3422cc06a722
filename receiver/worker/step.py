"""One lifecycle step for a claimed incident: resume, verify, plan, guard, act, record.

Each stage is its own module; this one only says the order. Everything up to the action
runs in one transaction; the action runs outside any, so the store stays free while it works.
"""

from __future__ import annotations

import logging

from receiver.catalog import Catalog
from receiver.db import repo
from receiver.domain import ACTIVE_STATUSES, EscalationReason, HealResult, IncidentStatus
from receiver.notify.base import Event
from receiver.worker.act import record, run_action
from receiver.worker.approval import waiting
from receiver.worker.context import StepContext, now
from receiver.worker.guards import pass_guards
from receiver.worker.plan import make_plan, matching
from receiver.worker.records import escalate, write_log
from receiver.worker.verify import judge

log = logging.getLogger(__name__)


async def step(ctx: StepContext, catalog: Catalog, incident_id: int) -> None:
    """Move one claimed incident along its lifecycle, then release the lease."""
    at = now()
    exhausted = EscalationReason.MAX_RETRIES
    async with ctx.db.transaction() as conn:
        row = await repo.get_incident(conn, incident_id)
        if row is None:
            return
        if row["status"] not in ACTIVE_STATUSES:
            await repo.release(conn, incident_id, ctx.owner)
            return
        if row["status"] == IncidentStatus.HEALING.value:
            # We hold the lease, so whoever was healing lost theirs mid-attempt.
            n = await repo.fail_interrupted(conn, incident_id, at)
            log.warning("incident %s: resuming after an interrupted attempt (%d)", incident_id, n)
            row["status"] = IncidentStatus.OPEN.value
        if row["status"] == IncidentStatus.VERIFYING.value:
            if not await judge(ctx, conn, row, catalog.names, at):
                return
            exhausted = EscalationReason.NOT_HEALED
        found = matching(catalog, row)
        # What was learned orders several matching playbooks; with one, there is no choice.
        learned = (
            await repo.knowledge.records_for(conn, row["error_type"], row["signature"])
            if len(found) > 1
            else None
        )
        plan = make_plan(catalog, row, ctx.scope, found, learned)
        if isinstance(plan, EscalationReason):
            await escalate(ctx, conn, row, plan, at)
            return
        if row["status"] == IncidentStatus.AWAITING_APPROVAL.value and not await waiting(
            ctx, conn, row, plan, at
        ):
            return
        attempt = await pass_guards(ctx, conn, row, plan, at, exhausted)
        if attempt is None:
            return
        log_id = await write_log(ctx, conn, row, plan, HealResult.PENDING, at, attempt=attempt)
        await repo.update_incident(
            conn,
            incident_id,
            {
                "status": IncidentStatus.HEALING.value,
                "retry_count": attempt,
                "playbook_id": plan.playbook_id,
                "target": plan.target,
                "last_action_at": at,
                "updated_at": at,
            },
        )
        if ctx.notify.healing:
            await conn.run_sync(repo.outbox.notify, ctx.notify, Event.HEALING, [incident_id], at)
    outcome, duration = await run_action(ctx, plan, row)
    await record(ctx, row, plan, log_id, attempt, outcome, duration)
