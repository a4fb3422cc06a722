"""The background loops' one shape: a step repeated until cancelled, a failed step logged
and tried again next round (never ending the loop), and the tasks cancelled and awaited
when their owner stops.

The sender, the pruner, the escalator and the worker's poll are each a ``repeat`` of their
step; each owner's ``running()`` starts its loops with ``tasks`` and closes what it opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any


async def repeat(
    step: Callable[[], Awaitable[object]],
    *,
    every: float,
    log: logging.Logger,
    failed: str,
    wake: asyncio.Event | None = None,
    wait_first: bool = False,
    settle: float = 0.0,
) -> None:
    """Run ``step`` every ``every`` seconds, at once when ``wake`` is set, and again at once
    while it returns a true value (it found work: there may be more; a step that must keep
    its pace whatever it found returns None). ``failed``: the log
    line when a step raises. ``settle``: after a wake, wait this long before the step (the
    waker's transaction commits first)."""
    if wait_first:
        await asyncio.sleep(every)
    while True:
        if wake is not None:
            wake.clear()
        try:
            busy = await step()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception(failed)
            busy = False
        if busy:
            await asyncio.sleep(0)  # a step that always finds work still lets others run
            continue
        if wake is None:
            await asyncio.sleep(every)
            continue
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), every)
            if settle:
                await asyncio.sleep(settle)


@contextlib.asynccontextmanager
async def tasks(
    **loops: Coroutine[Any, Any, None],
) -> AsyncIterator[dict[str, asyncio.Task[None]]]:
    """Run each loop in a task named for it (``autoheal-<name>``) while the block runs;
    then cancel them all and wait for them to end."""
    started = {
        name: asyncio.create_task(loop, name=f"autoheal-{name}") for name, loop in loops.items()
    }
    try:
        yield started
    finally:
        for task in started.values():
            task.cancel()
        await asyncio.gather(*started.values(), return_exceptions=True)
