"""ssh_command and friends against a real sshd (and a second one as jump host).

The target sshd's sessions reach podman through the Docker CLI, so an allow-listed
``docker restart NAME`` sent over SSH restarts a real container end to end.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import oom_alert, playbook_yaml


def playbook(action: str, params: str, **fields: Any) -> str:
    return playbook_yaml(
        action, params, name="over ssh", **{"cooldown_minutes": 0, "verify_seconds": 60, **fields}
    )


def alert(make_alert: Any, fp: str = "fp", **labels: str) -> Any:
    return oom_alert(make_alert, fp, **labels)


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
def box(podman: Any) -> Any:
    podman.container("app")
    return podman


async def test_allowed_command_restarts_a_container_over_ssh(
    sshbed: Any, box: Any, make_service: Any, playbooks_dir: Any, make_alert: Any
) -> None:
    svc = await make_service(
        hosts=hosts(sshbed),
        playbooks=playbooks_dir(
            playbook(
                "ssh_command",
                "{host: web1, command: docker_restart, args: {container: '${labels.container}'}}",
            )
        ),
    )
    before = box.started_at("app")
    await svc.post("/api/v1/alerts", alert(make_alert, container="app"))
    started = time.perf_counter()
    await svc.settle(30)
    elapsed = time.perf_counter() - started
    incident = await svc.only_incident()
    (log,) = incident["heal_logs"]
    assert log["result"] == "success", log
    assert log["action_detail"] == "ssh web1: docker restart app"
    assert log["result_output"].strip() == "app"  # what `docker restart` printed
    assert box.started_at("app") != before
    print(f"\nrestart through SSH + Docker CLI, alert to verified restart: {elapsed * 1000:.0f} ms")


async def test_docker_restart_on_an_ssh_only_host_uses_the_allow_list(
    sshbed: Any, box: Any, make_service: Any, playbooks_dir: Any, make_alert: Any
) -> None:
    svc = await make_service(
        hosts=hosts(sshbed),
        playbooks=playbooks_dir(
            playbook("docker_restart", "{host: web1, container: '${labels.container}'}")
        ),
    )
    before = box.started_at("app")
    await svc.post("/api/v1/alerts", alert(make_alert, container="app"))
    await svc.settle(30)
    (log,) = (await svc.only_incident())["heal_logs"]
    assert log["result"] == "success", log
    assert log["action_detail"] == "ssh web1: docker restart app"
    assert box.started_at("app") != before


async def test_through_a_jump_host(
    sshbed: Any, box: Any, make_service: Any, playbooks_dir: Any, make_alert: Any
) -> None:
    svc = await make_service(
        hosts=hosts(sshbed),
        playbooks=playbooks_dir(
            playbook("ssh_command", "{host: web2, command: docker_restart, args: {container: app}}")
        ),
    )
    before = box.started_at("app")
    await svc.post("/api/v1/alerts", alert(make_alert))
    await svc.settle(30)
    (log,) = (await svc.only_incident())["heal_logs"]
    assert log["result"] == "success", log
    assert box.started_at("app") != before
    assert f"target 127.0.0.1 port {sshbed.target.port}" in sshbed.jump.log  # forwarded


async def test_failing_command_records_exit_status_and_output(
    sshbed: Any, box: Any, make_service: Any, playbooks_dir: Any, make_alert: Any
) -> None:
    svc = await make_service(
        hosts=hosts(sshbed),
        playbooks=playbooks_dir(
            playbook(
                "compose_restart",
                "{host: web1, file: /srv/momo/docker-compose.yml, service: momo-db}",
                max_retries=1,
            )
        ),
    )
    await svc.post("/api/v1/alerts", alert(make_alert))
    await svc.settle(30)
    (log,) = (await svc.only_incident())["heal_logs"]
    assert log["result"] == "failed"
    # The argv went out quoted as declared; this host has no compose plugin, and says so.
    assert (
        log["action_detail"]
        == "ssh web1: docker compose -f /srv/momo/docker-compose.yml restart momo-db"
    )
    assert log["result_output"].startswith("exit ")
    assert "exit 125" in log["result_output"]  # the Docker CLI without its compose plugin


async def test_output_is_capped(
    sshbed: Any, tmp_path: Path, make_service: Any, playbooks_dir: Any, make_alert: Any
) -> None:
    big = tmp_path / "big.txt"
    big.write_text("x" * 200_000 + "END")
    svc = await make_service(
        hosts=hosts(sshbed),
        commands={"show": ["cat", "{file}"]},
        playbooks=playbooks_dir(
            playbook("ssh_command", f"{{host: web1, command: show, args: {{file: {big}}}}}")
        ),
    )
    await svc.post("/api/v1/alerts", alert(make_alert))
    await svc.settle(30)
    (log,) = (await svc.only_incident())["heal_logs"]
    assert log["result"] == "success"
    assert len(log["result_output"]) == 65_536
    assert log["result_output"].endswith("END")


async def test_wrong_host_key_is_refused(
    sshbed: Any, make_service: Any, playbooks_dir: Any, make_alert: Any
) -> None:
    # The jump host's key where web1's should be: the server cannot prove who it is.
    svc = await make_service(
        hosts=hosts(sshbed, known_hosts=sshbed.jump.known_hosts),
        playbooks=playbooks_dir(
            playbook("ssh_command", "{host: web1, command: docker_restart, args: {container: app}}")
        ),
    )
    await svc.post("/api/v1/alerts", alert(make_alert))
    await svc.settle(30)
    incident = await svc.only_incident()
    (log,) = incident["heal_logs"]
    assert log["result"] == "failed"
    assert "ssh refused" in log["result_output"]
    assert incident["escalation_reason"] == "not_retryable"


async def test_unknown_client_key_is_refused(
    sshbed: Any, make_service: Any, playbooks_dir: Any, make_alert: Any
) -> None:
    svc = await make_service(
        hosts=hosts(sshbed, key=sshbed.stranger_key),
        playbooks=playbooks_dir(
            playbook("ssh_command", "{host: web1, command: docker_restart, args: {container: app}}")
        ),
    )
    await svc.post("/api/v1/alerts", alert(make_alert))
    await svc.settle(30)
    incident = await svc.only_incident()
    (log,) = incident["heal_logs"]
    assert log["result"] == "failed"
    assert "Permission denied" in log["result_output"] or "ssh refused" in log["result_output"]
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
    sshbed: Any, make_service: Any, playbooks_dir: Any, make_alert: Any, value: str
) -> None:
    svc = await make_service(
        hosts=hosts(sshbed),
        playbooks=playbooks_dir(
            playbook(
                "ssh_command",
                "{host: web1, command: docker_restart, args: {container: '${labels.container}'}}",
            )
        ),
    )
    connections_before = sshbed.target.log.count("Connection from")
    resp = await svc.post("/api/v1/alerts", alert(make_alert, container=value))
    assert resp.status == 200  # stored: the refusal is recorded, not bounced
    await svc.settle(30)
    incident = await svc.only_incident()
    (log,) = incident["heal_logs"]
    assert log["result"] == "refused"
    assert incident["status"] == "escalated"
    assert incident["escalation_reason"] == "refused"
    assert sshbed.target.log.count("Connection from") == connections_before


@pytest.mark.parametrize("host", ["nowhere", "web1;id", "${labels.x}"])
async def test_unknown_host_from_a_label_is_refused_before_anything_runs(
    sshbed: Any, make_service: Any, playbooks_dir: Any, make_alert: Any, host: str
) -> None:
    svc = await make_service(
        hosts=hosts(sshbed),
        playbooks=playbooks_dir(
            playbook(
                "ssh_command",
                "{host: '${labels.instance}', command: docker_restart, args: {container: app}}",
            )
        ),
    )
    await svc.post("/api/v1/alerts", alert(make_alert, instance=host))
    await svc.settle(30)
    incident = await svc.only_incident()
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
    folder = playbooks_dir(
        playbook("ssh_command", "{host: web1, command: rm_everything, args: {}}")
    )
    with pytest.raises(PlaybookError, match="not in the allow-list"):
        load_files(folder, settings.param_scope())
    folder = playbooks_dir(
        playbook("ssh_command", "{host: web9, command: docker_restart, args: {container: a}}")
    )
    with pytest.raises(PlaybookError, match="not in the host inventory"):
        load_files(folder, settings.param_scope())
