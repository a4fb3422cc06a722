"""Verify: after a successful action, did the repair hold?

An Alertmanager incident is healed when its alert resolves within the verify window (the
resolve arrives through ingest); one still firing at the deadline was not. A scheduler
incident is healed when its task reports success or stays quiet through the window, and not
healed as soon as it fails again.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from receiver.db import repo
from receiver.domain import IncidentStatus, Source
from receiver.worker.context import StepContext

log = logging.getLogger(__name__)


async def judge(
    ctx: StepContext, conn: Any, row: dict[str, Any], names: Mapping[int, str], now: datetime
) -> bool:
    """Judge a verifying incident. True: the repair did not hold, attempt again (``row`` is
    then open again); False: resolved, or still waiting (the lease is given up)."""
    deadline = row["verify_deadline"] or now
    recurred = (
        row["source"] == Source.SCHEDULER.value
        and row["last_action_at"] is not None
        and row["last_seen_at"] > row["last_action_at"]
    )
    if recurred or (now >= deadline and row["source"] == Source.ALERTMANAGER.value):
        log.info("incident %s: repair did not hold", row["id"])
        ctx.metrics.verify_outcomes.labels("not_held").inc()
        if row["playbook_id"] is not None:
            await repo.count_playbook(conn, row["playbook_id"], ok=False)
            await conn.run_sync(repo.outcomes.not_healed, [row["id"]], now)
        row["status"] = IncidentStatus.OPEN.value
        return True
    if now >= deadline:
        # A scheduler task that stayed quiet through the window is healed.
        resolved = await repo.resolve(conn, row, now)
        if resolved is not None:
            ctx.metrics.resolved([resolved], "quiet", names)
            await conn.run_sync(repo.outcomes.healed, ctx.notify, [row["id"]], now)
        await repo.release(conn, row["id"], ctx.owner)
        return False
    await repo.update_incident(
        conn, row["id"], {"next_attempt_at": deadline, "lease_owner": None, "lease_until": None}
    )
    return False
