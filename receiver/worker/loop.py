"""The heal worker's loop: claim due incidents in batches, run their actions concurrently,
record what came of them in batches.

All state lives in the store (status, deadlines, lease); this process only holds a lease
while it works, so another replica (or this one after a restart) resumes where it stopped.

Three parts, each a few store round trips however many incidents a storm brings:

- the poll claims as many due incidents as there are free action slots and moves them all
  one step on in one transaction (``begin``);
- each action that may run gets a task of its own (``act.run_action``), outside any
  transaction;
- the recorder writes finished actions' outcomes: whatever finished while it wrote the last
  ones goes into the next transaction (``act.record``), like ingest's group commit. A slot is
  free again once its outcome is stored.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import timedelta

from sqlalchemy.exc import DBAPIError

from receiver.actions import ACTIONS, Action
from receiver.background import repeat, tasks
from receiver.catalog import CatalogHolder
from receiver.config import Settings
from receiver.db import repo
from receiver.db.engine import SHORT_ROWS, Database
from receiver.effects import Effects
from receiver.evidence import EvidencePolicy
from receiver.metrics import Metrics
from receiver.notify import announcer
from receiver.resources import Resources
from receiver.worker.act import Done, cleared, record, run_action
from receiver.worker.begin import Started, begin
from receiver.worker.context import StepContext, now
from receiver.worker.decisions import Policy
from receiver.worker.lookout import Lookout

log = logging.getLogger(__name__)

# A batch of outcomes the store refused is tried again this often before each one is tried
# alone; an outcome still refused is left to the lease (another claim finds the attempt
# interrupted and runs it again).
_RECORD_TRIES = 3
_RECORD_BACKOFF = 0.5


class HealWorker:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        catalog: CatalogHolder,
        metrics: Metrics,
        resources: Resources | None = None,
        on_escalated: Callable[[], None] = lambda: None,
        actions: Mapping[str, Action] = ACTIONS,
    ) -> None:
        self.settings = settings
        self.db = db
        self.catalog = catalog
        # Names this replica in leases and heal logs: unique per process, readable by people.
        self.owner = settings.replica_id or f"{socket.gethostname()}-{os.getpid()}"
        self.metrics = metrics
        self.on_escalated = on_escalated  # e.g. post to Alertmanager soon
        self.ctx = StepContext(
            settings,
            self.owner,
            resources,
            settings.param_scope(),
            Policy.of(settings),
            actions,
            announcer(settings),
            EvidencePolicy.from_settings(settings),
        )
        self.lookout = Lookout(
            resources.alertmanager if resources is not None else None,
            self.ctx.policy,
            settings.recheck_alerts,
            resources.prometheus if resources is not None else None,
        )
        self._wake = asyncio.Event()
        self._busy = 0  # actions started whose outcome is not stored yet
        self._polling = asyncio.Lock()
        self._actions: set[asyncio.Task[None]] = set()
        self._finished: collections.deque[Done] = collections.deque()
        self._has_finished = asyncio.Event()
        self._settled = asyncio.Event()  # set whenever no action is running or unrecorded
        self._running: set[int] = set()  # incidents whose action runs in this process

    def wake(self) -> None:
        """New work was committed: look now rather than at the next poll."""
        self._wake.set()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[HealWorker]:
        poll = repeat(
            self.poll_once,
            every=self.settings.worker_poll_seconds,
            log=log,
            failed="worker poll failed; retrying",
            wake=self._wake,
        )
        loops = {"worker": poll, "worker-leases": self._renewer()}
        if self.lookout.recheck:
            loops["worker-verify"] = repeat(
                self.watch_verifying, every=0.5, log=log, failed="verify watch failed; retrying"
            )
        async with tasks(**{"worker-recorder": self._recorder()}):
            try:
                async with tasks(**loops):
                    yield self
            finally:
                # Actions cut short are left to their leases (the attempt is then recorded
                # as interrupted); outcomes already in hand are stored before the recorder
                # stops.
                for t in list(self._actions):
                    t.cancel()
                await asyncio.gather(*self._actions, return_exceptions=True)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._until_recorded(), 10)

    async def poll_once(self) -> int:
        """Claim what is due (as many as there are free slots), move each one step on, and
        start the actions that may run. Returns how many incidents were claimed."""
        # One poll at a time: ``drain`` beside the running loop (tests) waits for the
        # loop's poll to have started its actions, instead of finding them leased and
        # not yet counted busy and taking that for "nothing due".
        async with self._polling:
            return await self._poll()

    async def _poll(self) -> int:
        free = self.settings.worker_concurrency - self._busy
        if free <= 0:
            return 0
        at = now()
        # Look before taking the write lock: most wake-ups find nothing due.
        async with self.db.reading() as conn:
            due = await repo.next_due(conn)
        if due is None or due > at:
            return 0
        catalog = self.catalog.current
        # Alertmanager is asked here, outside the transaction: blocking alerts, and the
        # alerts of incidents that waited.
        seen = await self.lookout.look(self.db, catalog, at, free)
        begun = await self.db.run_in_transaction(
            begin,
            self.ctx,
            catalog,
            at,
            free,
            frozenset(self._running),
            seen,
            short=free <= SHORT_ROWS,
        )
        self.metrics.claims.inc(begun.claimed)
        self._applied(begun.effects)
        for s in begun.started:
            self._busy += 1
            self._settled.clear()
            task = asyncio.create_task(self._act(s))
            self._actions.add(task)
            task.add_done_callback(self._actions.discard)
        return begun.claimed

    async def watch_verifying(self) -> None:
        """Resolve the repairs under verification whose alert Alertmanager no longer holds
        (the resolve notification comes a group_interval later, or not at all)."""
        gone = await self.lookout.cleared(self.db)
        if gone:
            effects = await self.db.run_in_transaction(cleared, self.ctx, gone, now())
            self._applied(effects)

    async def drain(self, within: float = 30) -> None:
        """Run until nothing is due now and every outcome is stored (tests: works with the
        background loop stopped, recording outcomes itself)."""
        deadline = time.monotonic() + within
        while (left := deadline - time.monotonic()) > 0:
            claimed = await self.poll_once()
            if self._busy:
                if self._actions:
                    await asyncio.wait(
                        set(self._actions), timeout=left, return_when=asyncio.FIRST_COMPLETED
                    )
                if self._finished:
                    await self._record_finished()
                elif not self._actions:  # the recorder is storing them
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._until_recorded(), left)
            elif not claimed:
                return
        raise TimeoutError("worker did not drain")

    async def _until_recorded(self) -> None:
        while self._busy:
            await self._settled.wait()

    async def _act(self, s: Started) -> None:
        self._running.add(s.row["id"])
        try:
            done = await run_action(self.ctx, s)
        except BaseException:
            self._free(1)  # cancelled (shutting down): left to the lease, nothing to store
            raise
        finally:
            self._running.discard(s.row["id"])
        self._finished.append(done)
        self._has_finished.set()

    def _free(self, slots: int) -> None:
        self._busy -= slots
        if not self._busy:
            self._settled.set()
        self.wake()

    async def _renewer(self) -> None:
        """Keep the leases of running actions alive: an action may take longer than the
        lease (a slow restart), and an expired lease lets a claim, this replica's or
        another's, take the incident as interrupted and run it again beside itself. Renewed
        every third of the lease, so two renewals may fail before it runs out."""
        every = self.settings.lease_seconds / 3
        while True:
            await asyncio.sleep(every)
            running = set(self._running)
            if not running:
                continue
            until = now() + timedelta(seconds=self.settings.lease_seconds)
            try:
                held = await self.db.run_in_transaction(
                    repo.incidents.renew, running, self.owner, until
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("lease renewal failed (%s); retrying", type(exc).__name__)
                continue
            # An action may finish (and give up its lease) while this round ran.
            lost = (running & self._running) - held
            if lost:
                log.warning(
                    "incidents %s: lease lost while the action ran; its outcome will not "
                    "change the incident",
                    sorted(lost),
                )

    async def _recorder(self) -> None:
        while True:
            await self._has_finished.wait()
            # Outcomes that finish in this loop turn, or while a commit runs, join the batch.
            await asyncio.sleep(0)
            await self._record_finished()

    async def _record_finished(self) -> None:
        batch = list(self._finished)
        self._finished.clear()
        self._has_finished.clear()
        if not batch:
            return
        try:
            await self._store(batch, _RECORD_TRIES)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("recording %d outcome(s) failed; leases will expire", len(batch))
        finally:
            self._free(len(batch))

    async def _store(self, batch: list[Done], tries: int) -> None:
        for attempt in range(tries):
            if attempt:
                await asyncio.sleep(_RECORD_BACKOFF * 2 ** (attempt - 1))
            try:
                effects = await self.db.run_in_transaction(
                    record, self.ctx, batch, now(), short=len(batch) <= SHORT_ROWS
                )
            except DBAPIError as exc:
                log.warning("store refused %d outcome(s): %s", len(batch), exc.__class__.__name__)
                continue
            self._applied(effects)
            return
        if len(batch) > 1:
            # One outcome's rows must not fail its neighbours': try them one by one.
            for done in batch:
                await self._store([done], 1)
            return
        log.error(
            "incident %s: outcome of attempt %d not stored; the lease will expire and the "
            "attempt is taken as interrupted",
            batch[0].started.row["id"],
            batch[0].started.attempt,
        )

    def _applied(self, effects: Effects) -> None:
        effects.apply(self.metrics, self.catalog.current.names)
        if effects.escalated:
            self.on_escalated()
