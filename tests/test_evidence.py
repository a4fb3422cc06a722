"""Evidence before acting: a container's State and log tail (podman's Docker API), an SSH
host's diagnostic (a real sshd), bounded and redacted, in the heal log, the API, the CLI and
the escalation message; a capture that fails never stops the repair."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from receiver.config import load_settings
from receiver.errors import ConfigError
from receiver.evidence import DEFAULT_REDACT, Redaction, compile_patterns, summary, tail
from receiver.logs import REDACTED
from tests.conftest import oom_alert, playbook_yaml, until
from tests.test_cli import autoheal
from tests.test_notify import with_telegram
from tests.test_ssh import hosts

SECRET = "hunter2-s3cr3t"
# Prints 300 numbered lines, a secret and an error; the first run exits 3, later runs stay up.
CRASHES_ONCE = (
    "i=0; while [ $i -lt 300 ]; do echo line $i; i=$((i+1)); done; "
    f"echo DB_PASSWORD={SECRET} connecting; echo fatal: cannot allocate memory >&2; "
    "if [ -e /tmp/ran ]; then trap 'exit 0' TERM; sleep 3600 & wait; fi; "
    ": > /tmp/ran; exit 3"
)
# Its one run leaves the image broken (no /bin/sh): every start after it fails.
CRASHES_ALWAYS = (
    f"echo starting with token={SECRET}; echo fatal: config missing >&2; rm /bin/sh; exit 3"
)


def _redact(text: str) -> str:
    return Redaction(compile_patterns(DEFAULT_REDACT, "evidence_redact"), ["autoheal-own-1"])(text)


# -- pure parts -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "kept", "gone"),
    [
        ("DB_PASSWORD=hunter2 connecting", "DB_PASSWORD=[REDACTED] connecting", "hunter2"),
        ('{"api_key": "abcd1234", "user": "bob"}', '"user": "bob"', "abcd1234"),
        ("Authorization: Bearer abc.def.ghi123", "Authorization:", "abc.def.ghi123"),
        ("dsn postgres://app:pa55word@db:5432/app", "postgres://app:[REDACTED]@db", "pa55word"),
        ("jwt eyJhbGciOi.eyJzdWIiOiIx.SflKxwRJSM here", "jwt [REDACTED] here", "eyJhbGciOi"),
        ("key AKIAIOSFODNN7EXAMPLE used", "key [REDACTED] used", "AKIAIOSFODNN7EXAMPLE"),
        ("-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----", "", "MIIEow"),
        ("leaked autoheal-own-1 by value", "leaked [REDACTED] by value", "autoheal-own-1"),
        ("GET /health 200 1.2ms", "GET /health 200 1.2ms", "[REDACTED]"),
    ],
)
def test_default_patterns_redact_secrets_and_keep_the_rest(line: str, kept: str, gone: str) -> None:
    out = _redact(line)
    assert kept in out
    assert gone not in out


def test_a_pattern_without_group_redacts_the_whole_match() -> None:
    redact = Redaction(compile_patterns([r"card \d{4}-\d{4}", r"(?i)pin=(\d+)"], "x"))
    assert redact("card 1234-5678 pin=0042 ok") == f"{REDACTED} pin={REDACTED} ok"


def test_tail_bounds_lines_then_bytes_at_a_line_start() -> None:
    text = "".join(f"line {i}\n" for i in range(300))
    kept, cut = tail(text, 200, 65_536)
    assert cut and kept.startswith("line 100\n") and kept.endswith("line 299\n")
    kept, cut = tail(text, 200, 30)
    assert cut and kept == "line 297\nline 298\nline 299\n"
    assert tail("a\nb\n", 200, 100) == ("a\nb\n", False)
    kept, cut = tail("é" * 100, 10, 11)  # a cut inside a character drops the half
    assert cut and kept == "é" * 5


def test_summary_says_state_and_last_log_line() -> None:
    evidence = {
        "host": "local",
        "container": {
            "name": "app",
            "status": "exited",
            "exit_code": 137,
            "oom_killed": True,
            "restart_count": 4,
            "health": {"status": "unhealthy"},
        },
        "logs": {"text": "a\nfatal: out of memory\n\n"},
        "errors": ["logs app: boom"],
    }
    assert summary(evidence) == (
        "local/app was exited (exit code 137, OOM-killed), restarted 4 times, health "
        "unhealthy; last log: fatal: out of memory; capture: logs app: boom"
    )
    assert summary(None) is None


def test_settings_refuse_a_pattern_that_does_not_compile() -> None:
    with pytest.raises(ConfigError, match=r"evidence_redact\[1\].*does not compile"):
        load_settings(None, evidence_redact=["ok", "(unclosed"])


def test_a_diagnostic_must_be_an_allow_listed_command_of_an_ssh_host() -> None:
    ssh = {"host": "127.0.0.1", "user": "u", "key_file": "/k", "known_hosts": "/kh"}
    with pytest.raises(ConfigError, match="not in the allow-list"):
        load_settings(None, hosts={"web1": {"ssh": ssh, "diagnostic": "nope"}})
    with pytest.raises(ConfigError, match="needs ssh"):
        load_settings(
            None,
            hosts={"web1": {"docker": {"url": "unix:///x.sock"}, "diagnostic": "docker_start"}},
        )
    with pytest.raises(ConfigError, match="only the container slot"):
        load_settings(None, hosts={"web1": {"ssh": ssh, "diagnostic": "compose_restart"}})
    settings = load_settings(None, hosts={"web1": {"ssh": ssh, "diagnostic": "docker_start"}})
    assert settings.inventory.hosts["web1"].diagnostic == "docker_start"


# -- against the real engine ----------------------------------------------------------------


def container_playbook(action: str, params: str, **fields: Any) -> str:
    return playbook_yaml(
        action, params, name="evidence", cooldown_minutes=0, verify_seconds=60, **fields
    )


def exited(podman: Any, name: str, command: str) -> None:
    """A container that ran ``command`` once and exited."""
    podman.container(name, command=command, start=False)
    podman.podman("start", "--attach", name, check=False)
    assert not podman.running(name)


async def test_state_and_log_tail_before_start_bounded_and_redacted(
    podman: Any, make_service: Any, playbooks_dir: Any, make_alert: Any, store_url: str
) -> None:
    exited(podman, "crashy", CRASHES_ONCE)
    svc = await make_service(
        docker_url=podman.url,
        evidence_log_lines=50,
        playbooks=playbooks_dir(container_playbook("docker_start", "{container: crashy}")),
    )
    await svc.post("/api/v1/alerts", oom_alert(make_alert, container="crashy"))
    await svc.settle(30)
    incident = await svc.only_incident()
    (log,) = incident["heal_logs"]
    assert log["result"] == "success", log  # the capture did not get in the way
    assert podman.running("crashy")
    evidence = log["evidence"]
    state = evidence["container"]
    assert (state["name"], state["status"], state["exit_code"]) == ("crashy", "exited", 3)
    assert state["running"] is False and state["oom_killed"] is False
    logs = evidence["logs"]
    assert logs["lines"] == 50 and logs["truncated"] is True
    assert "DB_PASSWORD=[REDACTED] connecting" in logs["text"]
    assert "fatal: cannot allocate memory" in logs["text"]  # stderr too
    assert "line 252" in logs["text"] and "line 251\n" not in logs["text"]
    # Captured before the start: the second run's output is not in it.
    assert logs["text"].count("connecting") == 1
    assert SECRET not in json.dumps(incident)
    assert "errors" not in evidence
    assert svc.sample("autoheal_evidence_captures_total", {"result": "complete"}) == 1

    # The command line shows the same, and no secret either.
    shown = autoheal("incident", str(incident["id"]), env={"AUTOHEAL_DATABASE_URL": store_url})
    assert shown.returncode == 0, shown.stderr
    assert "crashy was exited (exit code 3)" in shown.stdout
    assert "DB_PASSWORD=[REDACTED] connecting" in shown.stdout
    assert SECRET not in shown.stdout


async def test_health_log_of_an_unhealthy_container(
    podman: Any, make_service: Any, playbooks_dir: Any, make_alert: Any
) -> None:
    podman.container("sickly", health_cmd="test -e /nonexistent")
    for _ in range(2):
        podman.healthcheck("sickly")
    svc = await make_service(
        docker_url=podman.url,
        playbooks=playbooks_dir(
            container_playbook(
                "docker_restart",
                "{container: sickly, stop_timeout: 0, healthy_timeout: 0}",
                max_retries=1,
            )
        ),
    )
    await svc.post("/api/v1/alerts", oom_alert(make_alert, container="sickly"))
    await svc.settle(30)
    (log,) = (await svc.only_incident())["heal_logs"]
    health = log["evidence"]["container"]["health"]
    assert health["status"] == "unhealthy"
    assert health["failing_streak"] >= 1
    assert health["log"] and all(run["exit_code"] == 1 for run in health["log"])
    assert log["evidence"]["container"]["running"] is True


async def test_a_failed_capture_never_blocks_the_repair(
    podman: Any, make_service: Any, playbooks_dir: Any, make_alert: Any
) -> None:
    podman.container("steady")
    before = podman.started_at("steady")
    svc = await make_service(
        docker_url=podman.url,
        evidence_timeout_seconds=0.000_001,
        playbooks=playbooks_dir(
            container_playbook("docker_restart", "{container: steady, stop_timeout: 0}")
        ),
    )
    await svc.post("/api/v1/alerts", oom_alert(make_alert, container="steady"))
    await svc.settle(30)
    (log,) = (await svc.only_incident())["heal_logs"]
    assert log["result"] == "success", log
    assert podman.started_at("steady") != before
    assert "capture stopped after" in log["evidence"]["errors"][0]
    assert svc.sample("autoheal_evidence_captures_total", {"result": "partial"}) == 1


async def test_a_missing_container_is_said_in_the_evidence(
    podman: Any, make_service: Any, playbooks_dir: Any, make_alert: Any
) -> None:
    svc = await make_service(
        docker_url=podman.url,
        playbooks=playbooks_dir(container_playbook("docker_restart", "{container: nobody-here}")),
    )
    await svc.post("/api/v1/alerts", oom_alert(make_alert, container="x"))
    await svc.settle(30)
    (log,) = (await svc.only_incident())["heal_logs"]
    assert log["result"] == "failed"
    assert "nobody-here" in log["evidence"]["errors"][0]


async def escalated_on_a_broken_container(
    podman: Any, make_service: Any, playbooks_dir: Any, make_alert: Any, name: str, **settings: Any
) -> tuple[Any, dict[str, Any]]:
    """A container whose every start fails, an alert on it, and the incident escalated after
    its start was tried (with evidence taken before)."""
    exited(podman, name, CRASHES_ALWAYS)
    svc = await make_service(
        docker_url=podman.url,
        playbooks=playbooks_dir(
            container_playbook("docker_start", f"{{container: {name}, healthy_timeout: 0}}")
        ),
        **settings,
    )
    await svc.post("/api/v1/alerts", oom_alert(make_alert, container=name))
    await svc.settle(30)
    incident = await svc.only_incident()
    assert incident["status"] == "escalated", incident
    return svc, incident


async def test_escalation_message_summarises_the_evidence(
    podman: Any,
    make_service: Any,
    playbooks_dir: Any,
    make_alert: Any,
    telegram: Any,
    store_url: str,
) -> None:
    svc, incident = await escalated_on_a_broken_container(
        podman, make_service, playbooks_dir, make_alert, "broken", **with_telegram(telegram)
    )
    await svc.deliver()
    (message,) = [m["text"] for m in telegram.delivered if "Escalated" in m["text"]]
    assert "Before the repair: local/broken was exited (exit code 3)" in message
    assert "last log:" in message and "fatal: config missing" in message
    assert SECRET not in message
    # The terminal timeline says who was told, and how delivery went.
    shown = autoheal("incident", str(incident["id"]), env={"AUTOHEAL_DATABASE_URL": store_url})
    assert "escalated notice to telegram: sent" in shown.stdout, shown.stdout


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
@pytest.mark.usefixtures("programs")
@pytest.mark.timeout(120)
async def test_the_escalation_alert_in_alertmanager_carries_the_evidence(
    podman: Any,
    make_service: Any,
    playbooks_dir: Any,
    make_alert: Any,
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On-call reached through Alertmanager's routes (PagerDuty, e-mail) reads what the
    container looked like too, not only Telegram; read once per action, not every round."""
    import asyncio

    from receiver import appkeys
    from receiver.db import repo
    from receiver.notify.alertmanager import Escalator
    from tests.conftest import TOKEN
    from tests.realprograms import start_alertmanager, stop_process
    from tests.test_escalation import am_alerts

    svc, incident = await escalated_on_a_broken_container(
        podman, make_service, playbooks_dir, make_alert, "broken-am"
    )
    hook = str(svc.client.make_url("/api/v1/alerts"))
    am = await asyncio.to_thread(start_alertmanager, tmp_path / "am", hook, TOKEN)
    try:
        settings = svc.app[appkeys.SETTINGS].model_copy(update={"alertmanager_url": am.url})
        escalator = Escalator(settings, svc.db)
        reads: list[list[int]] = []
        read = repo.heal_logs.last_evidence

        async def counted(conn: Any, ids: list[int]) -> Any:
            reads.append(list(ids))
            return await read(conn, ids)

        monkeypatch.setattr(repo.heal_logs, "last_evidence", counted)
        async with escalator.running():  # its loop posts a first round at once
            (alert,) = await until(lambda: am_alerts(am.url), 20, "escalation in Alertmanager")
            assert reads == [[incident["id"]]]
            assert await escalator.post_round() == 1
            assert await escalator.post_round() == 1
        assert len(reads) == 1  # later rounds posted what the first had read
        said = alert["annotations"]["evidence"]
        assert said.startswith("local/broken-am was exited (exit code 3)"), said
        assert "fatal: config missing" in said and SECRET not in said
        assert f"Before the repair: {said}" in alert["annotations"]["description"]
    finally:
        stop_process(am.process)


# -- over SSH -------------------------------------------------------------------------------


async def test_ssh_host_diagnostic_before_an_ssh_command(
    sshbed: Any, podman: Any, make_service: Any, playbooks_dir: Any, make_alert: Any
) -> None:
    podman.container("chatty", command=f"echo ready with api_key={SECRET}; exec sleep 3600")
    inventory = hosts(sshbed)
    inventory["web1"]["diagnostic"] = "recent_logs"
    svc = await make_service(
        hosts=inventory,
        commands={
            "docker_restart": ["docker", "restart", "-t", "0", "{container}"],
            "recent_logs": ["docker", "logs", "--tail", "5", "{container}"],
        },
        playbooks=playbooks_dir(
            container_playbook(
                "ssh_command",
                "{host: web1, command: docker_restart, args: {container: chatty}}",
                max_retries=1,
            )
        ),
    )
    await svc.post("/api/v1/alerts", oom_alert(make_alert, container="chatty"))
    await svc.settle(30)
    (log,) = (await svc.only_incident())["heal_logs"]
    assert log["result"] == "success", log
    diagnostic = log["evidence"]["diagnostic"]
    assert diagnostic["command"] == "docker logs --tail 5 chatty"
    assert diagnostic["exit_status"] == 0
    assert re.search(r"ready with api_key=\[REDACTED\]", diagnostic["output"])
    assert SECRET not in json.dumps(log)
    assert "container" not in log["evidence"]  # web1 has no Engine API to ask
