"""The story of each incident in the log: one structured line per transition.

opened, action_started (with its target), action_result, verified, resolved and escalated
(with the reason) are logged at INFO on the ``autoheal.incident`` logger, each with the
incident id as a field, so ``journalctl -u autoheal`` (or a log pipeline reading logfmt or
JSON, see ``log_format``) tells what happened to an incident and when. Lines are written
after the transaction that made the change commits: a rolled-back change tells nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from receiver.domain import Resolved

log = logging.getLogger("autoheal.incident")


def tell(event: str, incident_id: int, **fields: Any) -> None:
    """One transition of one incident ("incident 7 escalated: budget", fields alongside)."""
    if log.isEnabledFor(logging.INFO):
        reason = fields.get("reason")
        log.info(
            "incident %d %s" + (": %s" if reason else ""),
            incident_id,
            event,
            *((reason,) if reason else ()),
            extra={"incident": incident_id, "event": event, **fields},
        )


def resolved(closed: Iterable[Resolved], how: str) -> None:
    """Incidents a resolve closed; a healed one was first verified (its repair held)."""
    for r in closed:
        if r.healed:
            tell("verified", r.id, held=True)
        tell("resolved", r.id, how=how, healed=r.healed)
