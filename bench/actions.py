"""Restart latency: through the Docker Engine API and through SSH + the Docker CLI.

Starts podman's Docker-compatible API and a real sshd on loopback (the test suite's recipes),
then times autoheal's docker_restart action both ways, end to end inside the action (inspect,
restart, confirm a new StartedAt), next to the bare restart call as a baseline. Prints median
and p90 over N runs; the first run of each shows a cold connection, the rest a pooled one.

    python bench/actions.py [--runs 20]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from receiver.actions import ACTIONS  # noqa: E402
from receiver.actions.base import ActionContext  # noqa: E402
from receiver.config import load_settings  # noqa: E402
from receiver.resources import DockerClients, Resources, SSHPool  # noqa: E402
from tests.realprograms import keygen, start_podman, start_sshd, stop_podman, stop_sshd  # noqa: E402


def summary(name: str, samples: list[float]) -> None:
    samples = sorted(samples)
    p90 = samples[int(len(samples) * 0.9) - 1]
    print(f"{name:<34}{statistics.median(samples) * 1000:>9.1f}{p90 * 1000:>9.1f}{len(samples):>6}")


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="autoheal-bench-actions-"))
    engine = start_podman(tmp / "podman")
    keygen(tmp / "client_key")
    sshd = start_sshd(tmp / "sshd", tmp / "client_key.pub", env={"DOCKER_HOST": engine.url})
    try:
        engine.container("app")
        settings = load_settings(
            docker_url=engine.url,
            hosts={
                "web1": {
                    "ssh": {
                        "host": "127.0.0.1",
                        "port": sshd.port,
                        "user": "root",
                        "key_file": str(tmp / "client_key"),
                        "known_hosts": str(sshd.known_hosts),
                    }
                }
            },
        )
        inv = settings.inventory
        resources = Resources(inv, DockerClients(inv), SSHPool(inv))
        action = ACTIONS["docker_restart"]
        ctx = ActionContext(0, {}, 60, resources)
        print(f"{'docker_restart (t=0)':<34}{'p50 ms':>9}{'p90 ms':>9}{'runs':>6}")
        # Baseline: the bare Engine API call (restart only), same client, same container.
        client = resources.docker.get("local")
        container = await client.containers.get("app")
        baseline = []
        for _ in range(args.runs):
            started = time.perf_counter()
            await container.restart(t=0)
            baseline.append(time.perf_counter() - started)
        summary("bare API restart call (baseline)", baseline)
        for label, host in (("Engine API (unix socket)", "local"), ("SSH + docker CLI", "web1")):
            params = action.params_model.model_validate(
                {"container": "app", "host": host, "stop_timeout": 0},
                context=settings.param_scope(),
            )
            samples = []
            for i in range(args.runs + 1):
                started = time.perf_counter()
                outcome = await action.run(params, ctx)
                elapsed = time.perf_counter() - started
                if not outcome.ok:
                    raise SystemExit(f"{label}: {outcome.output}")
                if i == 0:
                    print(f"{label + ', first (cold)':<34}{elapsed * 1000:>9.1f}")
                else:
                    samples.append(elapsed)
            summary(label + ", warm", samples)
        await resources.ssh.close()
        await resources.docker.close()
    finally:
        stop_sshd(sshd)
        stop_podman(engine)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
