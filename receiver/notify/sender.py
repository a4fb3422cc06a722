"""The outbox sender: claims due notifications with a lease, delivers them, marks them once.

Policy, stated once:
- every few seconds (``notify_batch_seconds``) it takes what is due; a channel with
  ``notify_summary_after`` or more notices in that batch gets one summary instead of one
  message each (an alert storm is one message, not hundreds);
- a delivery is retried in place through tenacity: up to 4 tries, exponential back-off
  (0.5 s doubling to 8 s) or the channel's own ``retry_after`` when longer (Telegram's 429),
  all within 60 s;
- still failing and retryable: the rows go back to pending, next tried after 30 s doubling to
  15 min, for as long as it takes (a chat outage loses nothing); refused for good (a 4xx
  other than 429): marked failed with the channel's answer, and counted;
- a row is marked sent by the replica that holds its lease, so two replicas never both
  deliver it; a crash between commit and delivery leaves it pending, delivered after restart.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from receiver.background import repeat, tasks
from receiver.db.engine import Database
from receiver.db.repo import outbox
from receiver.domain import NoticeEvent, OutboxState
from receiver.metrics import Metrics
from receiver.notify.base import Notice, Notifier, NotifyError

log = logging.getLogger(__name__)

LEASE = timedelta(seconds=120)  # past the in-place retries' 60 s and a send's timeout
CLAIM_LIMIT = 500
INLINE_TRIES = 4
INLINE_WITHIN = 60.0


def _wait(state: Any) -> float:
    """Exponential back-off, or the channel's retry_after when it asks for longer."""
    exc = state.outcome.exception() if state.outcome is not None else None
    backoff: float = min(0.5 * 2 ** (state.attempt_number - 1), 8.0)
    if isinstance(exc, NotifyError) and exc.retry_after is not None:
        return max(backoff, exc.retry_after)
    return backoff


def requeue_delay(attempts: int) -> timedelta:
    """Before a pending row is tried again after its in-place retries ran out."""
    return timedelta(seconds=min(30 * 2**attempts, 900))


class OutboxSender:
    def __init__(
        self,
        db: Database,
        notifiers: dict[str, Notifier],
        metrics: Metrics,
        owner: str,
        *,
        batch_seconds: float,
        summary_after: int,
    ) -> None:
        self.db = db
        self.notifiers = notifiers
        self.metrics = metrics
        self.owner = owner
        self.batch_seconds = batch_seconds
        self.summary_after = summary_after
        for channel in notifiers:
            for result in (OutboxState.SENT, "retry", OutboxState.FAILED):
                metrics.notifications.labels(channel, result)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[OutboxSender]:
        # Every batch_seconds, however much the last round sent: what arrives meanwhile is
        # grouped into one message per channel (a storm is a summary, not a flood).
        loop = repeat(
            self._round, every=self.batch_seconds, log=log, failed="outbox: flush failed; retrying"
        )
        try:
            async with tasks(outbox=loop):
                yield self
        finally:
            for notifier in self.notifiers.values():
                await notifier.close()

    async def _round(self) -> None:
        await self.flush()

    async def flush(self) -> int:
        """Deliver what is due now; the number of outbox rows settled."""
        now = datetime.now(UTC)
        async with self.db.transaction() as conn:
            rows = await outbox.claim(conn, self.owner, now, LEASE, CLAIM_LIMIT)
        by_channel: dict[str, list[Any]] = {}
        for row in rows:
            by_channel.setdefault(row.channel, []).append(row)
        settled = 0
        for channel, group in by_channel.items():
            notifier = self.notifiers.get(channel)
            if notifier is None:
                # Queued while the channel was configured; this replica has no such channel.
                await self._settle(channel, group, OutboxState.FAILED, "channel not configured")
                settled += len(group)
                continue
            # Approval requests carry their own buttons: never folded into a summary.
            asks = [r for r in group if r.payload.get("event") == NoticeEvent.APPROVAL]
            rest = [r for r in group if r.payload.get("event") != NoticeEvent.APPROVAL]
            batches = [[r] for r in asks]
            batches += [rest] if len(rest) >= self.summary_after else [[r] for r in rest]
            for batch in batches:
                await self._deliver(channel, notifier, batch)
                settled += len(batch)
        return settled

    async def _deliver(self, channel: str, notifier: Notifier, rows: Sequence[Any]) -> None:
        notices = [Notice.from_json(r.payload) for r in rows]
        try:
            await self._send(notifier, notices)
        except NotifyError as exc:
            if exc.retryable:
                log.warning("outbox: %s delivery failed, will retry: %s", channel, exc)
                await self._settle(channel, rows, "retry", str(exc))
            else:
                log.error("outbox: %s refused the message for good: %s", channel, exc)
                await self._settle(channel, rows, OutboxState.FAILED, str(exc))
            return
        await self._settle(channel, rows, OutboxState.SENT, None)

    async def _send(self, notifier: Notifier, notices: Sequence[Notice]) -> None:
        from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, stop_after_delay

        retrying = AsyncRetrying(
            stop=stop_after_attempt(INLINE_TRIES) | stop_after_delay(INLINE_WITHIN),
            wait=_wait,
            retry=retry_if_exception(lambda e: isinstance(e, NotifyError) and e.retryable),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                await notifier.send(notices)

    async def _settle(
        self, channel: str, rows: Sequence[Any], status: str, error: str | None
    ) -> None:
        now = datetime.now(UTC)
        ids = [r.id for r in rows]
        retry_at = now + requeue_delay(max(r.attempts for r in rows)) if status == "retry" else None
        async with self.db.transaction() as conn:
            held = await outbox.finish(
                conn,
                ids,
                self.owner,
                now,
                status=OutboxState.PENDING if status == "retry" else status,
                error=error,
                retry_at=retry_at,
            )
        if held < len(ids):
            log.warning(
                "outbox: %d of %d rows were taken over before settling", len(ids) - held, len(ids)
            )
        self.metrics.notifications.labels(channel, status).inc(len(ids))
