"""The heal worker: claims due incidents from the store and moves each one step on.

All state lives in the incidents row (status, deadlines, lease); this process only holds a
lease while it works, so another replica (or this one after a restart) resumes where it stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from receiver.actions import ACTIONS, ActionContext, ActionOutcome
from receiver.catalog import Catalog, CatalogHolder
from receiver.config import Settings
from receiver.db import repo
from receiver.db.engine import Database
from receiver.domain import (
    ACTIVE_STATUSES,
    ErrorType,
    EscalationReason,
    HealResult,
    IncidentStatus,
    Severity,
    Signal,
    Source,
)
from receiver.errors import SlotError
from receiver.metrics import Metrics
from receiver.playbooks import Playbook, candidates
from receiver.resources import MAX_OUTPUT, Resources
from receiver.templating import render

log = logging.getLogger(__name__)

# How soon an incident held back by another one acting on its target looks again.
BUSY_RETRY = timedelta(seconds=2)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class _Plan:
    """What the worker means to do for an incident: playbook, filled parameters (or why they
    were refused), what runs and on what target."""

    playbook: Playbook
    playbook_id: int
    params: Any  # the action's validated parameters, or the SlotError that refused them
    action_detail: str
    target: str


def incident_signal(row: Mapping[str, Any]) -> Signal:
    """Rebuild the signal a stored incident came from: matching reads labels and text only."""
    return Signal(
        source=Source(row["source"]),
        idempotency_key="",
        incident_key=row["dedup_key"] or "",
        firing=True,
        task_name=row["task_name"],
        error_type=ErrorType(row["error_type"]),
        severity=Severity(row["severity"]),
        message=row["error_message"],
        labels=row["labels"] or {},
        annotations=row["annotations"] or {},
        traceback=row["error_traceback"],
        fingerprint=row["fingerprint"],
    )


class HealWorker:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        catalog: CatalogHolder,
        metrics: Metrics,
        resources: Resources | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.catalog = catalog
        self.metrics = metrics
        self.resources = resources
        self._scope = settings.param_scope()
        # Names this replica in leases and heal logs: unique per process, readable by people.
        self.owner = settings.replica_id or f"{socket.gethostname()}-{os.getpid()}"
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(settings.worker_concurrency)
        self._inflight: set[asyncio.Task[None]] = set()
        self._lease = timedelta(seconds=settings.lease_seconds)

    def wake(self) -> None:
        """New work was committed: look now rather than at the next poll."""
        self._wake.set()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[HealWorker]:
        task = asyncio.create_task(self._loop(), name="autoheal-worker")
        try:
            yield self
        finally:
            task.cancel()
            for t in list(self._inflight):
                t.cancel()
            await asyncio.gather(task, *self._inflight, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            try:
                claimed = await self.poll_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("worker poll failed; retrying")
                claimed = 0
            if claimed:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.worker_poll_seconds)
            self._wake.clear()

    async def poll_once(self) -> int:
        """Claim what is due (as many as there are free slots) and start a step for each."""
        free = self.settings.worker_concurrency - len(self._inflight)
        if free <= 0:
            return 0
        now = _now()
        # Look before taking the write lock: most wake-ups find nothing due.
        async with self.db.reading() as conn:
            due = await repo.next_due(conn)
        if due is None or due > now:
            return 0
        async with self.db.transaction() as conn:
            ids = await repo.claim(conn, self.owner, now, self._lease, free)
        for incident_id in ids:
            task = asyncio.create_task(self._guarded_step(incident_id))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
        return len(ids)

    async def drain(self, within: float = 30) -> None:
        """Run until nothing is due now (tests)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            claimed = await self.poll_once()
            if self._inflight:
                await asyncio.gather(*self._inflight, return_exceptions=True)
            elif not claimed:
                return
        raise TimeoutError("worker did not drain")

    async def _guarded_step(self, incident_id: int) -> None:
        async with self._slots:
            try:
                await self.step(incident_id)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception(
                    "incident %s: step failed; lease will expire and it is retried", incident_id
                )
                return
        self.wake()

    async def step(self, incident_id: int) -> None:
        """Move one claimed incident along its lifecycle, then release the lease."""
        catalog = self.catalog.current
        now = _now()
        async with self.db.transaction() as conn:
            row = await repo.get_incident(conn, incident_id)
            if row is None:
                return
            if row["status"] not in ACTIVE_STATUSES:
                await repo.release(conn, incident_id, self.owner)
                return
            if row["status"] == IncidentStatus.HEALING.value:
                # We hold the lease, so whoever was healing lost theirs mid-attempt.
                n = await repo.fail_interrupted(conn, incident_id, now)
                log.warning(
                    "incident %s: resuming after an interrupted attempt (%d)", incident_id, n
                )
                row["status"] = IncidentStatus.OPEN.value
            if row["status"] == IncidentStatus.VERIFYING.value and not await self._verify(
                conn, row, now
            ):
                return
            plan = self._plan(catalog, row)
            if isinstance(plan, EscalationReason):
                await self._escalate(conn, row, plan, now)
                return
            attempt = await self._guard(conn, row, plan, now)
            if attempt is None:
                return
            log_id = await self._log(conn, row, plan, HealResult.PENDING, now, attempt=attempt)
            await repo.update_incident(
                conn,
                incident_id,
                {
                    "status": IncidentStatus.HEALING.value,
                    "retry_count": attempt,
                    "playbook_id": plan.playbook_id,
                    "target": plan.target,
                    "last_action_at": now,
                    "updated_at": now,
                },
            )
        # The action runs outside any transaction: the store stays free while it works.
        outcome, duration = await self._run_action(plan.playbook, plan.params, row)
        await self._record(row, plan, log_id, attempt, outcome, duration)

    async def _guard(
        self, conn: Any, row: Mapping[str, Any], plan: _Plan, now: datetime
    ) -> int | None:
        """Run the guards in order; the attempt number if the action may run, else None
        (the refusal is recorded and the incident escalated or deferred)."""
        playbook = plan.playbook
        if isinstance(plan.params, SlotError):
            await self._log(
                conn, row, plan, HealResult.REFUSED, now, "slot_refused", str(plan.params)
            )
            self.metrics.guard_refusals.labels("slot").inc()
            await self._escalate(conn, row, EscalationReason.REFUSED, now, plan.playbook_id)
            return None
        if row["retry_count"] >= playbook.max_retries:
            self.metrics.guard_refusals.labels("max_retries").inc()
            await self._escalate(conn, row, EscalationReason.MAX_RETRIES, now, plan.playbook_id)
            return None
        if self.settings.dry_run or playbook.dry_run:
            output = f"dry run: would run {plan.action_detail}"
            await self._log(
                conn,
                row,
                plan,
                HealResult.DRY_RUN,
                now,
                "dry_run",
                output,
                attempt=row["retry_count"] + 1,
            )
            await self._escalate(conn, row, EscalationReason.DRY_RUN, now, plan.playbook_id)
            return None
        # One action at a time per target, across replicas; held past the action timeout
        # so a replica that dies holding it frees the target by itself.
        hold = timedelta(seconds=self.settings.action_timeout_seconds + 30)
        if not await repo.lock_target(conn, plan.target, row["id"], self.owner, now, hold):
            output = f"another incident is acting on {plan.target}"
            await self._defer(conn, row, plan, "target_busy", output, now + BUSY_RETRY, now)
            return None
        cooldown = timedelta(minutes=playbook.cooldown_minutes)
        free_at = await repo.take_cooldown(
            conn, plan.playbook_id, plan.target, row["id"], cooldown, now
        )
        if free_at is not None:
            await repo.unlock_target(conn, plan.target, row["id"])
            output = f"{plan.target} in cooldown for {playbook.name!r} until {free_at.isoformat()}"
            await self._defer(conn, row, plan, "cooldown", output, free_at, now)
            return None
        return int(row["retry_count"]) + 1

    async def _log(
        self,
        conn: Any,
        row: Mapping[str, Any],
        plan: _Plan,
        result: HealResult,
        now: datetime,
        reason: str | None = None,
        output: str = "",
        *,
        attempt: int | None = None,
    ) -> int:
        """Write a heal log for this plan; anything but pending is final at once."""
        if result is not HealResult.PENDING:
            self.metrics.heal_attempts.labels(
                plan.playbook.name, plan.playbook.action_type, result.value
            ).inc()
        return await repo.add_heal_log(
            conn,
            incident_id=row["id"],
            playbook_id=plan.playbook_id,
            action_type=plan.playbook.action_type,
            action_detail=plan.action_detail,
            target=plan.target or None,
            result=result.value,
            reason=reason,
            result_output=output,
            attempt=row["retry_count"] if attempt is None else attempt,
            created_at=now,
            finished_at=None if result is HealResult.PENDING else now,
            replica=self.owner,
        )

    async def _defer(
        self,
        conn: Any,
        row: Mapping[str, Any],
        plan: _Plan,
        guard: str,
        output: str,
        until: datetime,
        now: datetime,
    ) -> None:
        """A guard held the action back: record it, and look again when it may pass."""
        await self._log(conn, row, plan, HealResult.SKIPPED, now, guard, output)
        self.metrics.guard_refusals.labels(guard).inc()
        await repo.update_incident(
            conn,
            row["id"],
            {
                "status": IncidentStatus.OPEN.value,
                "playbook_id": plan.playbook_id,
                "next_attempt_at": until,
                "lease_owner": None,
                "lease_until": None,
                "updated_at": now,
            },
        )

    def _plan(self, catalog: Catalog, row: Mapping[str, Any]) -> EscalationReason | _Plan:
        """Pick the playbook and fill its parameters: pure, no I/O."""
        found = candidates(catalog.playbooks, incident_signal(row))
        if not found:
            return EscalationReason.NO_PLAYBOOK
        playbook = found[0]
        playbook_id = catalog.ids[playbook.name]
        action = ACTIONS[playbook.action_type]
        try:
            raw = render(playbook.action_params, row["labels"] or {}, row["annotations"] or {})
            params = action.params_model.model_validate(raw, context=self._scope)
        except SlotError as exc:
            return _Plan(playbook, playbook_id, exc, f"{playbook.action_type} refused: {exc}", "")
        except ValidationError as exc:
            err = exc.errors()[0]
            slot = ".".join(map(str, err["loc"])) or "params"
            refused = SlotError(slot, str(err.get("input", ""))[:200], err["msg"])
            detail = f"{playbook.action_type} refused: {refused}"
            return _Plan(playbook, playbook_id, refused, detail, "")
        return _Plan(playbook, playbook_id, params, action.describe(params), action.target(params))

    async def _verify(self, conn: Any, row: dict[str, Any], now: datetime) -> bool:
        """Judge a verifying incident. True: the repair did not hold, attempt again."""
        deadline = row["verify_deadline"] or now
        recurred = (
            row["source"] == Source.SCHEDULER.value
            and row["last_action_at"] is not None
            and row["last_seen_at"] > row["last_action_at"]
        )
        if recurred or (now >= deadline and row["source"] == Source.ALERTMANAGER.value):
            log.info("incident %s: repair did not hold", row["id"])
            if row["playbook_id"] is not None:
                await repo.count_playbook(conn, row["playbook_id"], ok=False)
            row["status"] = IncidentStatus.OPEN.value
            return True
        if now >= deadline:
            # A scheduler task that stayed quiet through the window is healed.
            if await repo.resolve(conn, row, now):
                self.metrics.incidents_resolved.labels("quiet").inc()
            await repo.release(conn, row["id"], self.owner)
            return False
        await repo.update_incident(
            conn,
            row["id"],
            {
                "next_attempt_at": deadline,
                "lease_owner": None,
                "lease_until": None,
            },
        )
        return False

    async def _escalate(
        self,
        conn: Any,
        row: Mapping[str, Any],
        reason: EscalationReason,
        now: datetime,
        playbook_id: int | None = None,
    ) -> None:
        if playbook_id is not None:
            await repo.update_incident(conn, row["id"], {"playbook_id": playbook_id})
        if await repo.escalate(conn, row, reason, now):
            self.metrics.escalations.labels(reason.value).inc()
            log.info("incident %s escalated: %s", row["id"], reason.value)
        await repo.release(conn, row["id"], self.owner)

    async def _run_action(
        self, playbook: Playbook, params: Any, row: Mapping[str, Any]
    ) -> tuple[ActionOutcome, float]:
        action = ACTIONS[playbook.action_type]
        timeout = self.settings.action_timeout_seconds
        ctx = ActionContext(row["id"], row["labels"] or {}, timeout, self.resources)
        started = time.perf_counter()
        try:
            outcome = await asyncio.wait_for(action.run(params, ctx), timeout)
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            outcome = ActionOutcome(ok=False, output=f"timed out after {timeout:g}s")
        except Exception as exc:
            log.exception("incident %s: action %s raised", row["id"], playbook.action_type)
            outcome = ActionOutcome(ok=False, output=f"{type(exc).__name__}: {exc}")
        return outcome, time.perf_counter() - started

    async def _record(
        self,
        row: Mapping[str, Any],
        plan: _Plan,
        log_id: int,
        attempt: int,
        outcome: ActionOutcome,
        duration: float,
    ) -> None:
        now = _now()
        playbook, playbook_id = plan.playbook, plan.playbook_id
        result = HealResult.SUCCESS if outcome.ok else HealResult.FAILED
        self.metrics.heal_attempts.labels(playbook.name, playbook.action_type, result.value).inc()
        self.metrics.action_duration.labels(playbook.action_type, result.value).observe(duration)
        async with self.db.transaction() as conn:
            if outcome.detail is not None:
                await repo.finish_heal_log(conn, log_id, action_detail=outcome.detail)
            await repo.finish_heal_log(
                conn,
                log_id,
                result=result.value,
                result_output=outcome.output[-MAX_OUTPUT:],
                duration_ms=int(duration * 1000),
                finished_at=now,
                reason=None if outcome.ok or outcome.retryable else "not_retryable",
            )
            await repo.count_playbook(conn, playbook_id, outcome.ok)
            await repo.unlock_target(conn, plan.target, row["id"])
            healing = [IncidentStatus.HEALING.value]
            if outcome.ok and outcome.escalate is not None:
                await self._escalate(conn, row, outcome.escalate, now)
            elif outcome.ok:
                window = outcome.verify_after
                if window is None:
                    window = playbook.verify_seconds
                if window is None:
                    window = self.settings.default_verify_seconds
                deadline = now + timedelta(seconds=window)
                await repo.update_incident(
                    conn,
                    row["id"],
                    {
                        "status": IncidentStatus.VERIFYING.value,
                        "verify_deadline": deadline,
                        "next_attempt_at": deadline,
                        "updated_at": now,
                    },
                    only_if_status=healing,
                )
                await repo.release(conn, row["id"], self.owner)
            elif not outcome.retryable:
                await self._escalate(conn, row, EscalationReason.NOT_RETRYABLE, now)
            elif attempt >= playbook.max_retries:
                self.metrics.guard_refusals.labels("max_retries").inc()
                await self._escalate(conn, row, EscalationReason.MAX_RETRIES, now)
            else:
                backoff = timedelta(seconds=self.settings.retry_backoff_seconds)
                await repo.update_incident(
                    conn,
                    row["id"],
                    {
                        "status": IncidentStatus.OPEN.value,
                        "next_attempt_at": now + backoff,
                        "updated_at": now,
                    },
                    only_if_status=healing,
                )
                await repo.release(conn, row["id"], self.owner)
