"""deploy/ as shipped: the Prometheus and Alertmanager configs and rules pass the real tools,
and the rules' unit tests (deploy/rules/tests) pass under promtool."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, load_fixture, require

DEPLOY = ROOT / "deploy"
RULES = sorted((DEPLOY / "rules").glob("*.yml"))
RULE_TESTS = sorted((DEPLOY / "rules" / "tests").glob("*_test.yml"))


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        require(f"{name} (apt-get install prometheus prometheus-alertmanager)")
    assert path is not None
    return path


def run(*argv: str, cwd: Path | None = None) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=cwd, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_rule_files_exist() -> None:
    assert {p.name for p in RULES} == {"autoheal.yml", "remediation.yml"}
    assert {p.name for p in RULE_TESTS} == {"autoheal_test.yml", "remediation_test.yml"}


@pytest.mark.parametrize("rules", RULES, ids=lambda p: p.name)
def test_promtool_check_rules(rules: Path) -> None:
    assert "SUCCESS" in run(tool("promtool"), "check", "rules", str(rules))


@pytest.mark.parametrize("tests", RULE_TESTS, ids=lambda p: p.name)
def test_promtool_test_rules(tests: Path) -> None:
    assert "SUCCESS" in run(tool("promtool"), "test", "rules", tests.name, cwd=tests.parent)


def test_promtool_check_config() -> None:
    out = run(tool("promtool"), "check", "config", str(DEPLOY / "prometheus" / "prometheus.yml"))
    assert "SUCCESS" in out


def test_amtool_check_config() -> None:
    out = run(tool("amtool"), "check-config", str(DEPLOY / "alertmanager" / "alertmanager.yml"))
    assert "SUCCESS" in out


def test_alertmanager_routes_to_autoheal_only_what_it_can_heal() -> None:
    """amtool's route test: remediation alerts go to autoheal, its own alerts and its
    escalations go to people (autoheal never heals itself)."""
    config = str(DEPLOY / "alertmanager" / "alertmanager.yml")
    amtool = tool("amtool")
    cases = {
        ("alertname=ContainerOOMKilled", "error_type=OOM", "container=momo-scheduler"): "autoheal",
        ("alertname=AutoHealDown", "autoheal=self"): "on-call",
        ("alertname=AutoHealEscalated", "error_type=OOM", "container=momo-db"): "on-call",
        ("alertname=SomethingElse",): "on-call",
    }
    for labels, receiver in cases.items():
        out = run(amtool, "config", "routes", "test", f"--config.file={config}", *labels)
        assert out.splitlines()[0].strip() == receiver, (labels, out)


def test_remediation_rules_route_to_seed_playbooks() -> None:
    """Each example rule, as an alert, matches a bundled playbook: error type, labels and
    annotation text as the rule writes them (templates filled with the example's values)."""
    from receiver.catalog import load_files
    from receiver.payloads import AlertmanagerWebhook
    from receiver.playbooks import candidates
    from receiver.signals import from_webhook

    playbooks, classifier = load_files(ROOT / "playbooks")
    rules = yaml.safe_load((DEPLOY / "rules" / "remediation.yml").read_text())
    examples = {"{{ $labels.name }}": "momo-scheduler", "{{ $labels.instance }}": "momo-db"}
    seen = {}
    for rule in rules["groups"][0]["rules"]:
        filled = yaml.safe_dump({"labels": rule["labels"], "annotations": rule["annotations"]})
        for template, value in examples.items():
            filled = filled.replace(template, value)
        alert = yaml.safe_load(filled)
        # As Alertmanager would send it: the real payload, with this rule's labels.
        payload = load_fixture("prom_firing.json")
        payload["alerts"] = payload["alerts"][:1]
        payload["alerts"][0]["labels"] = {"alertname": rule["alert"], **alert["labels"]}
        payload["alerts"][0]["annotations"] = alert["annotations"]
        (signal,) = from_webhook(AlertmanagerWebhook.model_validate(payload), classifier)
        found = candidates(playbooks, signal)
        assert found, rule["alert"]
        seen[rule["alert"]] = found[0].name
    assert seen == {
        "PostgresContainerDown": "DB connection refused",
        "ContainerOOMKilled": "Scheduler OOM restart",
        "DNSResolutionFailing": "Docker DNS resolution failure",
    }


def _setting_names() -> set[str]:
    from receiver.config import ENV_PREFIX, Settings

    return {ENV_PREFIX + name.upper() for name in Settings.model_fields}


def test_compose_file_parses_and_mounts_what_the_repo_has(tmp_path: Path) -> None:
    """docker-compose validates the file against its schema (no engine needed); every
    bind-mounted path is one the repository ships (or the secret a user creates)."""
    compose = tool("docker-compose")
    run(compose, "-f", str(DEPLOY / "compose.yaml"), "config", "-q", cwd=DEPLOY)
    spec = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert {"autoheal", "prometheus", "alertmanager", "grafana"} <= set(spec["services"])
    for name, service in spec["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith((".", "/")) and "secrets/" not in source:
                if source.startswith("/var/run/docker.sock"):
                    continue
                assert (DEPLOY / source).exists(), (name, source)
        for variable in service.get("environment", {}):
            if variable.startswith("AUTOHEAL_"):
                assert variable in _setting_names(), variable
    assert spec["services"]["autoheal"]["build"]["dockerfile"] == "deploy/Dockerfile"


def test_dockerfile_copies_what_exists_and_sets_real_settings() -> None:
    """The image cannot be built here (no engine); what can be checked is that its COPY
    sources exist, its AUTOHEAL_ variables are settings, and it runs `autoheal serve`."""
    text = (DEPLOY / "Dockerfile").read_text()
    lines = [line.strip() for line in text.replace("\\\n", " ").splitlines()]
    copies = [line.split()[1:-1] for line in lines if line.startswith("COPY ")]
    assert copies
    for sources in copies:
        for source in sources:
            assert (ROOT / source).exists(), source
    variables = set(re.findall(r"\b(AUTOHEAL_[A-Z_]+)=", text))
    assert variables and variables <= _setting_names(), variables - _setting_names()
    assert 'ENTRYPOINT ["autoheal"]' in text and 'CMD ["serve"]' in text
    assert "USER autoheal" in text  # not root


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    """systemd-analyze verify, with ExecStart pointed at a program that exists here (the
    unit's own path, /opt/autoheal, is where its install notes put the venv)."""
    analyze = tool("systemd-analyze")
    unit = (DEPLOY / "systemd" / "autoheal.service").read_text()
    variables = set(re.findall(r"^Environment=(AUTOHEAL_[A-Z_]+)=", unit, re.MULTILINE))
    assert variables and variables <= _setting_names()
    assert "ExecStart=/opt/autoheal/bin/autoheal serve" in unit
    local = tmp_path / "autoheal.service"
    local.write_text(unit.replace("/opt/autoheal/bin/autoheal", "/bin/true"))
    result = subprocess.run(
        [analyze, "verify", str(local)], capture_output=True, text=True, timeout=60, check=False
    )
    problems = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if "autoheal.service" in line and "docker.service" not in line
    ]
    assert result.returncode == 0 and not problems, result.stdout + result.stderr


def test_shipped_config_says_what_to_fill_in_and_what_rules_need() -> None:
    """Issue 16, item 13: the example rules assumed cAdvisor and blackbox_exporter without
    saying so, and the on-call receiver was empty (escalations went nowhere). Each metric an
    example rule reads has an absent() rule telling on-call, and on-call delivers somewhere."""
    import re

    config = yaml.safe_load((DEPLOY / "alertmanager" / "alertmanager.yml").read_text())
    (on_call,) = [r for r in config["receivers"] if r["name"] == "on-call"]
    assert any(key.endswith("_configs") and on_call[key] for key in on_call), on_call
    text = (DEPLOY / "rules" / "remediation.yml").read_text()
    assert (
        "WHAT THESE RULES NEED" in text
        and "FILL IN" in (DEPLOY / "alertmanager" / "alertmanager.yml").read_text()
    )
    groups = {g["name"]: g["rules"] for g in yaml.safe_load(text)["groups"]}
    guarded = " ".join(r["expr"] for r in groups["autoheal-remediation-inputs"])
    for rule in groups["autoheal-remediation"]:
        for metric in re.findall(r"\b([a-z_]+)\{", rule["expr"]):
            assert f"absent({metric}" in guarded, (rule["alert"], metric)
    for rule in groups["autoheal-remediation-inputs"]:
        assert rule["labels"]["autoheal"] == "self"  # to people, never to autoheal
