"""ssh_command and friends against a real sshd (and a second one as jump host).

The target sshd's sessions reach podman through the Docker CLI, so an allow-listed
``docker restart NAME`` sent over SSH restarts a real container end to end.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import oom_alert, playbook_yaml

RESTART_APP = "{host: web1, command: docker_restart, args: {container: app}}"
RESTART_FROM_LABEL = (
    "{host: web1, command: docker_restart, args: {container: '${labels.container}'}}"
)

Heal = Callable[..., Awaitable[dict[str, Any]]]


def hosts(bed: Any, *, key: Path | None = None, known_hosts: Path | None = None) -> dict[str, Any]:
    ssh = {
        "host": "127.0.0.1",
        "user": "root",
        "key_file": str(key or bed.client_key),
        "known_hosts": str(known_hosts or bed.target.known_hosts),
    }
    return {
        "web1": {"ssh": {**ssh, "port": bed.target.port}},
        "bastion": {
            "ssh": {**ssh, "port": bed.jump.port, "known_hosts": str(bed.jump.known_hosts)}
        },
        "web2": {"ssh": {**ssh, "port": bed.target.port, "jump": "bastion"}},
    }


@pytest.fixture
def heal(sshbed: Any, make_service: Any, playbooks_dir: Any, make_alert: Any) -> Heal:
    """Serve one playbook over the test hosts, send one alert, let the worker finish; the
    incident with its heal logs comes back."""

    async def run(
        action: str,
        params: str,
        *,
        labels: dict[str, str] | None = None,
        inventory: dict[str, Any] | None = None,
        **settings: Any,
    ) -> dict[str, Any]:
        playbook = playbook_yaml(
            action, params, name="over ssh", cooldown_minutes=0, verify_seconds=60, max_retries=1
        )
        svc = await make_service(
            hosts=inventory or hosts(sshbed), playbooks=playbooks_dir(playbook), **settings
        )
        resp = await svc.post("/api/v1/alerts", oom_alert(make_alert, **(labels or {})))
        assert resp.status == 200  # stored, whatever happens to the heal
        await svc.settle(30)
        return await svc.only_incident()

    return run


@pytest.fixture
def box(podman: Any) -> Any:
    podman.container("app")
    return podman


async def test_allowed_command_restarts_a_container_over_ssh(heal: Heal, box: Any) -> None:
    before = box.started_at("app")
    started = time.perf_counter()
    incident = await heal("ssh_command", RESTART_FROM_LABEL, labels={"container": "app"})
    elapsed = time.perf_counter() - started
    (log,) = incident["heal_logs"]
    assert log["result"] == "success", log
    assert log["action_detail"] == "ssh web1: docker restart app"
    assert log["result_output"].strip() == "app"  # what `docker restart` printed
    assert box.started_at("app") != before
    print(f"\nrestart through SSH + Docker CLI, alert to verified restart: {elapsed * 1000:.0f} ms")


async def test_docker_restart_on_an_ssh_only_host_uses_the_allow_list(heal: Heal, box: Any) -> None:
    before = box.started_at("app")
    incident = await heal("docker_restart", "{host: web1, container: app}")
    (log,) = incident["heal_logs"]
    assert log["result"] == "success", log
    assert log["action_detail"] == "ssh web1: docker restart app"
    assert box.started_at("app") != before


async def test_through_a_jump_host(heal: Heal, box: Any, sshbed: Any) -> None:
    before = box.started_at("app")
    incident = await heal("ssh_command", RESTART_APP.replace("web1", "web2"))
    (log,) = incident["heal_logs"]
    assert log["result"] == "success", log
    assert box.started_at("app") != before
    assert f"target 127.0.0.1 port {sshbed.target.port}" in sshbed.jump.log  # forwarded


async def test_failing_command_records_exit_status_and_output(heal: Heal) -> None:
    incident = await heal(
        "compose_restart", "{host: web1, file: /srv/momo/docker-compose.yml, service: momo-db}"
    )
    (log,) = incident["heal_logs"]
    assert log["result"] == "failed"
    # The argv went out quoted as declared; the Docker CLI here has no compose plugin.
    assert log["action_detail"] == (
        "ssh web1: docker compose -f /srv/momo/docker-compose.yml restart momo-db"
    )
    assert log["result_output"].startswith("exit 125")


async def test_output_is_capped(heal: Heal, tmp_path: Path) -> None:
    big = tmp_path / "big.txt"
    big.write_text("x" * 200_000 + "END")
    incident = await heal(
        "ssh_command",
        f"{{host: web1, command: show, args: {{file: {big}}}}}",
        commands={"show": ["cat", "{file}"]},
    )
    (log,) = incident["heal_logs"]
    assert log["result"] == "success"
    assert len(log["result_output"]) == 65_536
    assert log["result_output"].endswith("END")


async def test_wrong_host_key_is_refused(heal: Heal, sshbed: Any) -> None:
    # The jump host's key where web1's should be: the server cannot prove who it is.
    incident = await heal(
        "ssh_command", RESTART_APP, inventory=hosts(sshbed, known_hosts=sshbed.jump.known_hosts)
    )
    (log,) = incident["heal_logs"]
    assert log["result"] == "failed"
    assert "ssh refused" in log["result_output"]
    assert incident["escalation_reason"] == "not_retryable"


async def test_unknown_client_key_is_refused(heal: Heal, sshbed: Any) -> None:
    incident = await heal(
        "ssh_command", RESTART_APP, inventory=hosts(sshbed, key=sshbed.stranger_key)
    )
    (log,) = incident["heal_logs"]
    assert log["result"] == "failed"
    assert "ssh refused" in log["result_output"]
    assert incident["escalation_reason"] == "not_retryable"


INJECTIONS = [
    "momo-db; rm -rf /",
    "$(id)",
    "`id`",
    "momo-db\nid",
    "../../etc",
    "a" * 10_240,
    "momо-db",  # Cyrillic о
    "ｍｏｍｏ-db",  # full-width
    "-rf",
    "app && id",
    "app|id",
    "app>x",
]


@pytest.mark.parametrize("value", INJECTIONS)
async def test_injection_is_refused_recorded_escalated_and_nothing_connects(
    heal: Heal, sshbed: Any, value: str
) -> None:
    connections_before = sshbed.target.log.count("Connection from")
    incident = await heal("ssh_command", RESTART_FROM_LABEL, labels={"container": value})
    (log,) = incident["heal_logs"]
    assert log["result"] == "refused"
    assert incident["status"] == "escalated"
    assert incident["escalation_reason"] == "refused"
    assert sshbed.target.log.count("Connection from") == connections_before


@pytest.mark.parametrize("host", ["nowhere", "web1;id", "${labels.x}"])
async def test_unknown_host_from_a_label_is_refused_before_anything_runs(
    heal: Heal, host: str
) -> None:
    incident = await heal(
        "ssh_command",
        "{host: '${labels.instance}', command: docker_restart, args: {container: app}}",
        labels={"instance": host},
    )
    assert incident["heal_logs"][0]["result"] == "refused"
    assert incident["escalation_reason"] == "refused"


async def test_check_refuses_commands_outside_the_allow_list(
    playbooks_dir: Any, make_settings: Any
) -> None:
    from receiver.catalog import load_files
    from receiver.errors import PlaybookError

    settings = make_settings(
        hosts={"web1": {"ssh": {"host": "h", "user": "u", "key_file": "/k", "known_hosts": "/kh"}}}
    )
    for params, message in (
        ("{host: web1, command: rm_everything, args: {}}", "not in the allow-list"),
        (
            "{host: web9, command: docker_restart, args: {container: a}}",
            "not in the host inventory",
        ),
        ("{host: web1, command: docker_restart, args: {image: a}}", "args must be exactly"),
    ):
        folder = playbooks_dir(playbook_yaml("ssh_command", params))
        with pytest.raises(PlaybookError, match=message):
            load_files(folder, settings.param_scope())
