"""kill -9 of the only replica in the middle of a 20,000-alert load, on both stores: every
alert that got a 2xx is in the store after the restart, and no heal runs twice (an attempt
the kill interrupted is recorded as such before it is tried again)."""

from __future__ import annotations

import asyncio
import collections
import signal
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import select

from receiver.db.engine import open_database
from receiver.db.schema import heal_logs, incidents
from tests.conftest import TOKEN, until
from tests.realprograms import listening
from tests.serving import Runner, oom_group, runner, start_replica, write_config

__all__ = ["runner"]  # the fixture, used by name

ALERTS = 20_000
PER_REQUEST = 10  # as Alertmanager groups them
KILL_AFTER = ALERTS // 2  # acknowledged alerts
# One alert in 66 is one a playbook heals (about 300, spread through the load so some are in
# flight at the kill); the rest match none and are escalated as they are stored.
HEALABLE_EVERY = 66


@pytest.mark.parametrize("store_url", ["sqlite", "postgresql"], indirect=True)
@pytest.mark.usefixtures("fresh_schema")
@pytest.mark.timeout(240)
async def test_kill_9_under_load_loses_no_acknowledged_alert(
    tmp_path: Path, store_url: str, runner: Runner
) -> None:
    config = write_config(tmp_path, runner, matcher='container=~"heal-.+"')
    env = {"AUTOHEAL_WORKER_CONCURRENCY": "8"}
    replica = start_replica(tmp_path, "only", store_url, config, **env)
    await until(lambda: asyncio.to_thread(listening, replica.port), 60, "listening")
    containers = [f"heal-{i}" if i % HEALABLE_EVERY == 0 else f"c{i}" for i in range(ALERTS)]
    batches = [containers[i : i + PER_REQUEST] for i in range(0, ALERTS, PER_REQUEST)]
    acked: list[str] = []
    killed = asyncio.Event()
    queue: asyncio.Queue[list[str]] = asyncio.Queue()
    for b in batches:
        queue.put_nowait(b)

    async def client(http: aiohttp.ClientSession) -> None:
        while not queue.empty() and not killed.is_set():
            batch = queue.get_nowait()
            try:
                async with http.post(f"{replica.url}/api/v1/alerts", json=oom_group(batch)) as resp:
                    if resp.status == 200:
                        acked.extend(batch)
            except (TimeoutError, aiohttp.ClientError):
                return  # the server is gone
            if len(acked) >= KILL_AFTER and not killed.is_set():
                killed.set()
                replica.process.send_signal(signal.SIGKILL)

    timeout = aiohttp.ClientTimeout(total=30)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(headers=headers, timeout=timeout) as http:
        await asyncio.gather(*(client(http) for _ in range(16)))
    replica.process.wait(10)
    assert killed.is_set() and len(acked) >= KILL_AFTER

    # Restarted under the same name; it resumes whatever it was doing.
    again = start_replica(tmp_path, "only", store_url, config, **env)
    try:
        await until(lambda: asyncio.to_thread(listening, again.port), 60, "listening again")
        db = open_database(store_url)
        try:

            async def stored() -> set[str]:
                async with db.reading() as conn:
                    rows = await conn.execute(select(incidents.c.labels))
                    return {r[0]["container"] for r in rows}

            missing = set(acked) - await stored()
            assert not missing, (
                f"{len(missing)} acknowledged alerts lost, e.g. {sorted(missing)[:5]}"
            )

            async def settled() -> bool:
                async with db.reading() as conn:
                    busy = await conn.execute(
                        select(incidents.c.id).where(incidents.c.status.in_(["open", "healing"]))
                    )
                    return not busy.first()

            await until(settled, 120, "worker through the backlog")
            async with db.reading() as conn:
                logs = (
                    await conn.execute(
                        select(
                            heal_logs.c.incident_id,
                            heal_logs.c.target,
                            heal_logs.c.result,
                            heal_logs.c.reason,
                        )
                    )
                ).all()
        finally:
            await db.dispose()
    finally:
        again.process.terminate()
        again.process.wait(15)
    interrupted = {t for _, t, result, reason in logs if reason == "interrupted"}
    ran = collections.Counter(runner.calls)
    healable = {c for c in acked if c.startswith("heal-")}
    assert healable <= set(ran)  # every acknowledged healable alert was healed
    for target, calls in ran.items():
        if f"http:{target}" in interrupted:
            assert calls <= 2, (target, calls)  # the interrupted call, then one more
        else:
            assert calls == 1, (target, calls)  # every other heal ran exactly once
    print(
        f"acknowledged {len(acked)} of {ALERTS}; heals {sum(ran.values())}; interrupted {len(interrupted)}"
    )
