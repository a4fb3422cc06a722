"""Verify: after a successful action, did the repair hold?

An Alertmanager incident is healed when its alert resolves within the verify window (the
resolve arrives through ingest); one still firing at the deadline was not. A scheduler
incident is healed when its task reports success or stays quiet through the window, and not
healed as soon as it fails again.
"""

from __future__ import annotations

import logging
from typing import Any

from receiver.domain import IncidentStatus, Source
from receiver.worker.writes import Writes

log = logging.getLogger(__name__)


def judge(w: Writes, row: dict[str, Any]) -> bool:
    """Judge a verifying incident. True: the repair did not hold, attempt again (``row`` is
    then open again); False: resolved, or still waiting (the lease is given up)."""
    now = w.now
    deadline = row["verify_deadline"] or now
    recurred = (
        row["source"] == Source.SCHEDULER.value
        and row["last_action_at"] is not None
        and row["last_seen_at"] > row["last_action_at"]
    )
    if recurred or (now >= deadline and row["source"] == Source.ALERTMANAGER.value):
        w.effects.tell("verified", row["id"], held=False)
        w.effects.count("verify_outcomes", "not_held")
        if row["playbook_id"] is not None:
            w.outcome(row["id"], row["playbook_id"], ok=False)
        row["status"] = IncidentStatus.OPEN.value
        return True
    if now >= deadline:
        w.resolve(row)  # a scheduler task that stayed quiet through the window is healed
        return False
    w.update(row["id"], {"next_attempt_at": deadline})
    w.release(row["id"])
    return False
