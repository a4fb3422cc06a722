"""The background loops' one shape (receiver/background.py), timed on the real event loop."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time

import pytest

from receiver.background import repeat, tasks

log = logging.getLogger("test.background")


async def _run_for(seconds: float, **loops: object) -> None:
    async with tasks(**loops):  # type: ignore[arg-type]
        await asyncio.sleep(seconds)


async def test_a_step_that_returns_nothing_keeps_its_pace() -> None:
    # The outbox sender's round: however much it sent, the next one waits its interval
    # (what arrives meanwhile is grouped into one message).
    calls: list[float] = []

    async def step() -> None:
        calls.append(time.monotonic())

    await _run_for(0.55, pace=repeat(step, every=0.2, log=log, failed="x"))
    assert 2 <= len(calls) <= 4
    assert all(b - a >= 0.19 for a, b in itertools.pairwise(calls))


async def test_a_step_that_found_work_runs_again_at_once() -> None:
    # The worker's poll: it claimed incidents, so there may be more due now.
    calls: list[float] = []

    async def step() -> int:
        calls.append(time.monotonic())
        return 1 if len(calls) < 5 else 0

    await _run_for(0.3, poll=repeat(step, every=10, log=log, failed="x"))
    assert len(calls) == 5
    assert calls[-1] - calls[0] < 0.1


async def test_a_failed_step_is_logged_and_the_loop_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[int] = []

    async def step() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")

    with caplog.at_level(logging.ERROR, logger="test.background"):
        await _run_for(0.35, flaky=repeat(step, every=0.1, log=log, failed="round failed"))
    assert len(calls) >= 2
    assert [r.getMessage() for r in caplog.records] == ["round failed"]


async def test_a_wake_runs_the_step_before_its_interval() -> None:
    wake = asyncio.Event()
    calls: list[float] = []

    async def step() -> None:
        calls.append(time.monotonic())

    async with tasks(woken=repeat(step, every=30, log=log, failed="x", wake=wake)):
        await asyncio.sleep(0.05)
        wake.set()
        await asyncio.sleep(0.05)
    assert len(calls) == 2


async def test_tasks_are_cancelled_and_awaited_when_the_block_ends() -> None:
    async with tasks(forever=asyncio.sleep(3600)) as started:  # type: ignore[arg-type]
        task = started["forever"]
        assert task.get_name() == "autoheal-forever"
    assert task.cancelled()


async def test_the_outbox_sender_keeps_its_batch_interval_while_it_sends() -> None:
    # Rows keep arriving in a storm; each round sends some. The next round still waits
    # notify_batch_seconds, so what arrives meanwhile goes out as one summary message.
    from prometheus_client import CollectorRegistry

    from receiver.metrics import build_metrics
    from receiver.notify.sender import OutboxSender

    rounds: list[float] = []

    class Busy(OutboxSender):
        async def flush(self) -> int:
            rounds.append(time.monotonic())
            return 5  # settled rows: there is always more

    metrics = build_metrics(CollectorRegistry())
    sender = Busy(None, {}, metrics, "r0", batch_seconds=0.2, summary_after=3)  # type: ignore[arg-type]
    async with sender.running():
        await asyncio.sleep(0.55)
    assert 2 <= len(rounds) <= 4
