"""The whole chain on real programs: a scrape target in a container, Prometheus, Alertmanager
with the shipped routing, and autoheal; shared by tests/test_chain.py and bench/chain.py.

The target is busybox httpd in a podman container on the host network, serving
``app_up 1`` from a file its start command writes. ``break_target`` overwrites the file with
``app_up 0`` (the fault); only a restart of the container repairs it. A target built
``broken`` writes ``app_up 0`` at every start: restarting it never helps.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from tests.realprograms import (
    IMAGE,
    Alertmanager,
    Podman,
    Prometheus,
    free_port,
    start_alertmanager,
    start_prometheus,
    stop_process,
    wait_for,
)

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
TARGET = "momo-db"  # the seed's "DB connection refused" playbook restarts this container
# Prometheus and Alertmanager at the fast end of what TESTBED.md measured.
SCRAPE_SECONDS = 1
GROUP_INTERVAL = "1s"

# The fault as a user would alert on it: labelled to route to the bundled seed playbook.
TARGET_RULES = f"""
groups:
  - name: chain
    interval: {SCRAPE_SECONDS}s
    rules:
      - alert: PostgresDown
        # Down while it reports unhealthy or cannot be scraped: a restart takes the target
        # away for a moment, and without the second half its series would go stale and
        # the alert resolve before anything healed.
        expr: app_up{{job="{TARGET}"}} == 0 or up{{job="{TARGET}"}} == 0
        labels:
          severity: warning
          error_type: DB_UNREACHABLE
          container: {TARGET}
        annotations:
          summary: "{TARGET} is unhealthy: connection refused"
"""


def http_json(url: str, data: Any = None, timeout: float = 5) -> Any:
    body = None if data is None else json.dumps(data).encode()
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"} if body else {}
    )
    with urllib.request.urlopen(request, timeout=timeout) as resp:
        return json.loads(resp.read() or b"null")


def shipped_alertmanager_config(webhook_url: str, *, fast: bool = True) -> str:
    """deploy/alertmanager/alertmanager.yml as shipped, with the test's webhook URL, token
    file and (``fast``) fast group timings: the routing under test is the one users get."""
    config = yaml.safe_load((DEPLOY / "alertmanager" / "alertmanager.yml").read_text())
    for route in [config["route"], *config["route"].get("routes", [])]:
        if fast and ("group_wait" in route or route is config["route"]):
            route.update(group_wait="0s", group_interval=GROUP_INTERVAL, repeat_interval="1h")
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = webhook_url
            hook["http_config"]["authorization"]["credentials_file"] = "{token_file}"
    return yaml.safe_dump(config)


def shipped_autoheal_rules() -> str:
    """deploy/rules/autoheal.yml with every ``for`` at 0s and a 1s evaluation, so a test sees
    the shipped expressions fire without waiting minutes."""
    rules = yaml.safe_load((DEPLOY / "rules" / "autoheal.yml").read_text())
    for group in rules["groups"]:
        group["interval"] = f"{SCRAPE_SECONDS}s"
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = "0s"
    return yaml.safe_dump(rules)


@dataclass
class Chain:
    podman: Podman
    prometheus: Prometheus
    alertmanager: Alertmanager
    target_port: int

    def target_value(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.target_port}/metrics", timeout=2) as r:
            return str(r.read().decode().split()[-1])

    def break_target(self) -> datetime:
        """The fault: the target reports unhealthy until its container restarts."""
        self.podman.podman("exec", TARGET, "sh", "-c", "echo app_up 0 > /www/metrics")
        return datetime.now(UTC)

    def query(self, expr: str) -> list[dict[str, Any]]:
        url = f"{self.prometheus.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        data = http_json(url)
        assert data["status"] == "success", data
        result: list[dict[str, Any]] = data["data"]["result"]
        return result

    def firing(self, alertname: str) -> bool:
        data = http_json(f"{self.prometheus.url}/api/v1/alerts")
        return any(
            a["labels"].get("alertname") == alertname and a["state"] == "firing"
            for a in data["data"]["alerts"]
        )

    def am_failed_notifications(self) -> float:
        """Alertmanager's own count of failed webhook deliveries."""
        with urllib.request.urlopen(f"{self.alertmanager.url}/metrics", timeout=2) as r:
            text = r.read().decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith("alertmanager_notifications_failed_total{") and "webhook" in line:
                total += float(line.split()[-1])
        return total

    def stop(self) -> None:
        stop_process(self.alertmanager.process)
        stop_process(self.prometheus.process)
        self.podman.podman("rm", "-f", "-t", "0", TARGET, check=False)


def start_target(podman: Podman, *, broken: bool = False) -> int:
    """The scrape target container (replacing any old one); its port once it serves."""
    port = free_port()
    value = 0 if broken else 1
    script = (
        f"mkdir -p /www && echo app_up {value} > /www/metrics && "
        f"trap 'exit 0' TERM; httpd -f -p 127.0.0.1:{port} -h /www & wait"
    )
    podman.podman("rm", "-f", "-t", "0", TARGET, check=False)
    podman.podman(
        "run", "-d", "--name", TARGET, "--network", "host", IMAGE, "/bin/sh", "-c", script
    )
    podman.names.add(TARGET)

    def serving() -> bool:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1).close()
            return True
        except OSError:
            return False

    wait_for(serving, 15, "target httpd")
    return port


def start_chain(
    root: Path,
    podman: Podman,
    autoheal_url: str,
    token: str,
    *,
    broken: bool = False,
    fast_groups: bool = True,
    am_port: int | None = None,
) -> Chain:
    """Target, Alertmanager (shipped routing; ``fast_groups``: the tests' group timings, else
    the shipped ones) and Prometheus scraping both target and autoheal, with the chain rule
    and autoheal's own rules loaded."""
    port = start_target(podman, broken=broken)
    hook = f"{autoheal_url}/api/v1/alerts"
    am = start_alertmanager(
        root / "am",
        hook,
        token,
        config=shipped_alertmanager_config(hook, fast=fast_groups),
        port=am_port,
    )
    autoheal = urllib.parse.urlsplit(autoheal_url).netloc
    config = {
        "global": {
            "scrape_interval": f"{SCRAPE_SECONDS}s",
            "evaluation_interval": f"{SCRAPE_SECONDS}s",
        },
        "alerting": {
            "alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am.port}"]}]}]
        },
        "scrape_configs": [
            {"job_name": TARGET, "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]},
            {"job_name": "autoheal", "static_configs": [{"targets": [autoheal]}]},
        ],
    }
    try:
        prom = start_prometheus(
            root / "prometheus",
            config,
            {"chain.yml": TARGET_RULES, "autoheal.yml": shipped_autoheal_rules()},
        )
    except Exception:
        stop_process(am.process)
        raise
    chain = Chain(podman, prom, am, port)
    # Both targets scraped before the test moves: the fault must be a change Prometheus sees.
    wait_for(lambda: len(chain.query('up{job=~"momo-db|autoheal"} == 1')) == 2, 20, "scrapes")
    return chain


def wait(check: Any, within: float, what: str) -> Any:
    """Poll ``check`` until it returns something truthy (returned), for at most ``within`` s."""
    deadline = time.monotonic() + within
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {within}s")
        time.sleep(0.05)
