"""deploy/ as shipped: the Prometheus and Alertmanager configs and rules pass the real tools,
and the rules' unit tests (deploy/rules/tests) pass under promtool."""

from __future__ import annotations

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
