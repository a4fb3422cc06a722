"""Time to heal over the real chain: a target's metric turns bad → Prometheus rule fires →
Alertmanager (the shipped routing) → autoheal (a real `autoheal serve` process, SQLite, the
bundled seed playbook) restarts the podman container → Prometheus sees it healthy →
Alertmanager sends resolved → incident resolved.

Each run starts afresh: autoheal's store (the seed playbook's 30-minute cooldown would hold
a second run back), the target container, Prometheus and Alertmanager. Prints
per-run phases and the median and spread:

  detect    fault → incident opened (scrape + rule evaluation + Alertmanager + delivery)
  claim     incident opened → action started (autoheal's worker)
  action    the restart itself (Docker Engine API, until a newer StartedAt is confirmed)
  confirm   action done → resolve received (scrape + evaluation + Alertmanager group_interval)
  total     fault → resolved

autoheal's own share is claim + action (and the resolve it stores, inside `confirm`).

    python bench/chain.py [--runs 5] [--shipped-timings] [--poll-alertmanager]

--shipped-timings keeps deploy/alertmanager's group_wait 5s and group_interval 30s (else 0s
and 1s). --poll-alertmanager gives autoheal the Alertmanager's URL, so verify asks it whether
the alert cleared instead of waiting for the resolved notification (Stage 8). Run with and
without it, on the shipped timings, for the time-to-heal each way.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.chain import (  # noqa: E402
    GROUP_INTERVAL,
    SCRAPE_SECONDS,
    http_json,
    start_chain,
    wait,
)
from tests.realprograms import free_port, start_podman, stop_podman, stop_process, wait_for  # noqa: E402

TOKEN = "bench-token"


def serve(
    tmp: Path, port: int, docker_url: str, run: int, alertmanager: str | None
) -> subprocess.Popen[bytes]:
    (tmp / "token").write_text(TOKEN)
    env = {
        **os.environ,
        "AUTOHEAL_LISTEN": f"127.0.0.1:{port}",
        "AUTOHEAL_AUTH_TOKEN_FILE": str(tmp / "token"),
        "AUTOHEAL_DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/run{run}.db",
        "AUTOHEAL_DOCKER_URL": docker_url,
        "AUTOHEAL_DEFAULT_VERIFY_SECONDS": "60",
        "AUTOHEAL_LOG_LEVEL": "WARNING",
    }
    if alertmanager:
        env["AUTOHEAL_ALERTMANAGER_URL"] = alertmanager
    with (tmp / f"autoheal{run}.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "receiver", "serve"], env=env, cwd=ROOT, stdout=log, stderr=log
        )

    def ready() -> bool:
        try:
            return bool(
                http_json(f"http://127.0.0.1:{port}/readyz", timeout=1)["status"] == "ready"
            )
        except Exception:
            return False

    wait_for(ready, 30, "autoheal ready")
    return process


def api(port: int, path: str) -> dict:
    import json
    import urllib.request

    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


def resolved(port: int) -> dict | None:
    items = api(port, "/api/v1/incidents")["items"]
    if not items or items[0]["status"] != "resolved":
        return None
    incident = api(port, f"/api/v1/incidents/{items[0]['id']}")
    if any(h["result"] == "pending" for h in incident["heal_logs"]):
        return None
    return incident


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--shipped-timings", action="store_true")
    parser.add_argument("--poll-alertmanager", action="store_true")
    args = parser.parse_args()
    fast = not args.shipped_timings
    tmp = Path(tempfile.mkdtemp(prefix="autoheal-bench-chain-"))
    engine = start_podman(tmp / "podman")
    port = free_port()

    def am_url(am_port: int) -> str | None:
        return f"http://127.0.0.1:{am_port}" if args.poll_alertmanager else None

    am_port = free_port()
    autoheal = serve(tmp, port, engine.url, 0, am_url(am_port))
    url = f"http://127.0.0.1:{port}"
    chain = start_chain(tmp, engine, url, TOKEN, fast_groups=fast, am_port=am_port)
    groups = f"group_wait 0s, group_interval {GROUP_INTERVAL}" if fast else "shipped groups"
    verify = "polls Alertmanager" if args.poll_alertmanager else "waits for the resolve"
    print(
        f"Prometheus scrape/evaluation {SCRAPE_SECONDS}s, rule `for` 0s; Alertmanager "
        f"{groups}; autoheal worker poll 1s (woken on ingest), verify {verify}"
    )
    header = ("run", "detect", "claim", "action", "confirm", "total")
    print("".join(f"{h:>10}" for h in header) + "   (seconds)")
    phases: dict[str, list[float]] = {h: [] for h in header[1:]}
    try:
        for run in range(1, args.runs + 1):
            if run > 1:
                stop_process(autoheal)
                am_port = free_port()
                autoheal = serve(tmp, port, engine.url, run, am_url(am_port))
                chain.stop()  # and a fresh target, Alertmanager and Prometheus
                chain = start_chain(
                    tmp / f"run{run}", engine, url, TOKEN, fast_groups=fast, am_port=am_port
                )
            time.sleep(2 * SCRAPE_SECONDS)  # a few healthy samples first
            broke = chain.break_target()
            incident = wait(lambda: resolved(port), 120, "incident resolved")
            (heal,) = incident["heal_logs"]
            opened, done = ts(incident["created_at"]), ts(heal["finished_at"])
            started, closed = ts(heal["created_at"]), ts(incident["resolved_at"])
            row = {
                "detect": (opened - broke).total_seconds(),
                "claim": (started - opened).total_seconds(),
                "action": heal["duration_ms"] / 1000,
                "confirm": (closed - done).total_seconds(),
                "total": (closed - broke).total_seconds(),
            }
            for key, value in row.items():
                phases[key].append(value)
            print(f"{run:>10}" + "".join(f"{row[h]:>10.2f}" for h in header[1:]))
        print(
            f"{'median':>10}"
            + "".join(f"{statistics.median(phases[h]):>10.2f}" for h in header[1:])
        )
        print(f"{'min':>10}" + "".join(f"{min(phases[h]):>10.2f}" for h in header[1:]))
        print(f"{'max':>10}" + "".join(f"{max(phases[h]):>10.2f}" for h in header[1:]))
        own = [c + a for c, a in zip(phases["claim"], phases["action"], strict=True)]
        share = [o / t for o, t in zip(own, phases["total"], strict=True)]
        print(
            f"autoheal's own (claim + action): median {statistics.median(own):.2f}s, "
            f"{statistics.median(share):.0%} of the total"
        )
    finally:
        stop_process(autoheal)
        chain.stop()
        stop_podman(engine)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
