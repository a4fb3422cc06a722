"""What people do to autoheal itself: pause, resume, lift a quarantine. One place for the
API, the command line and the web page, each written with its notice (through the outbox)
in one transaction, and logged."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from receiver.db import repo
from receiver.db.engine import Database
from receiver.domain import NoticeEvent, Paused
from receiver.notify.notices import Announcer, paused_text, resumed_text

log = logging.getLogger(__name__)


async def pause(
    db: Database, announce: Announcer, reason: str, by: str, now: datetime, until: datetime | None
) -> Paused:
    """No action starts on any replica until resumed (or ``until``); every channel told."""
    async with db.transaction() as conn:
        paused = await repo.pause.pause_all(conn, reason, by, now, until)
        await announce.operation(conn, NoticeEvent.PAUSED, paused_text(paused), now)
    log.warning("autoheal paused by %s: %s", by, reason)
    return paused


async def resume(
    db: Database, announce: Announcer, by: str, now: datetime
) -> tuple[Paused | None, int]:
    """End the pause (None: there was none); the incidents it held back are due now."""
    async with db.transaction() as conn:
        was, woke = await repo.pause.resume(conn, now)
        if was is not None:
            text = resumed_text(was, by, woke)
            await announce.operation(conn, NoticeEvent.RESUMED, text, now)
    if was is not None:
        log.warning("autoheal resumed by %s; %d incident(s) due now", by, woke)
    return was, woke


async def lift(db: Database, target: str, by: str, now: datetime) -> Any:
    """Lift a target's quarantine (None: it was not quarantined)."""
    async with db.transaction() as conn:
        lifted = await repo.quarantine.lift(conn, target, by, now)
    if lifted is not None:
        log.warning("quarantine of %s lifted by %s", target, by)
    return lifted
