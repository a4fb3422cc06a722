"""What every path that ends a repair writes besides the incident itself: the knowledge
row and the notification, in the same transaction. Synchronous (see ``outbox.enqueue``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection

from receiver.db.repo import knowledge
from receiver.db.repo.outbox import Announce
from receiver.domain import NoticeEvent


def healed(
    conn: Connection, announce: Announce | None, incident_ids: Sequence[int], now: datetime
) -> None:
    """Incidents whose repair held (alert resolved, task succeeded or stayed quiet)."""
    if not incident_ids:
        return
    knowledge.record(conn, incident_ids, True, now)
    if announce is not None:
        announce(conn, NoticeEvent.RESOLVED, incident_ids, now)


def not_healed(conn: Connection, incident_ids: Sequence[int], now: datetime) -> None:
    """An attempt that failed, or a repair that did not hold."""
    knowledge.record(conn, incident_ids, False, now)
