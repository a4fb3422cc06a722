from __future__ import annotations

from pathlib import Path

from receiver.classify import load_classifier
from receiver.domain import ErrorType, Severity, Source
from receiver.payloads import AlertmanagerWebhook, ExceptionReport
from receiver.signals import from_exception, from_webhook, message_signature
from tests.conftest import load_fixture

CLASSIFIER = load_classifier(Path(__file__).resolve().parent.parent / "playbooks")


def test_signature_strips_numbers_ids_and_addresses() -> None:
    a = message_signature(
        "Worker (pid:1234) at 0x7f3a2b1c killed; job 5f0c1e2a-1b2c-4d5e-8f90-123456789abc from 10.0.0.5:5432"
    )
    b = message_signature(
        "Worker (pid:99) at 0x1a killed; job 00000000-1111-2222-3333-444444444444 from 192.168.1.7:6543"
    )
    assert a == b
    assert a != message_signature("Worker killed for a different reason")


def test_real_fixture_becomes_signal_with_keys() -> None:
    payload = AlertmanagerWebhook.model_validate(load_fixture("prom_firing.json"))
    (signal,) = from_webhook(payload, CLASSIFIER)
    assert signal.source is Source.ALERTMANAGER
    assert signal.fingerprint == "ebe4c5339a543f3e"
    assert signal.incident_key.startswith("am:ebe4c5339a543f3e:2026-11-28T03:35:39.187")
    assert signal.task_name == "ContainerDown"
    assert signal.severity is Severity.P1
    assert signal.message == "container app is down"
    assert signal.ends_at is None  # Go's zero time means "still firing"
    assert signal.extra["group"]["groupKey"].startswith("{}:")


def test_resolved_shares_incident_key_not_idempotency_key() -> None:
    firing = from_webhook(
        AlertmanagerWebhook.model_validate(load_fixture("firing.json")), CLASSIFIER
    )[0]
    resolved = from_webhook(
        AlertmanagerWebhook.model_validate(load_fixture("resolved.json")), CLASSIFIER
    )[0]
    assert firing.incident_key == resolved.incident_key
    assert firing.idempotency_key != resolved.idempotency_key
    assert not resolved.firing


def test_unknown_fields_are_kept() -> None:
    data = load_fixture("firing.json")
    data["notification_reason"] = "new_alert"
    data["routeLabels"] = {"team": "ops"}
    data["somethingNew"] = {"x": 1}
    data["alerts"][0]["silencedBy"] = []
    (signal,) = from_webhook(AlertmanagerWebhook.model_validate(data), CLASSIFIER)
    assert signal.extra["group"]["notification_reason"] == "new_alert"
    assert signal.extra["group"]["routeLabels"] == {"team": "ops"}
    assert signal.extra["group"]["somethingNew"] == {"x": 1}
    assert signal.extra["silencedBy"] == []


def test_exception_signal() -> None:
    report = ExceptionReport.model_validate(
        {
            "task": "run_weekly_strategy",
            "message": "Worker (pid:77) was sent SIGKILL! Perhaps out of memory?",
            "labels": {"container": "momo-scheduler"},
            "severity": "critical",
        }
    )
    signal = from_exception(report, CLASSIFIER)
    assert signal.error_type is ErrorType.OOM
    assert signal.severity is Severity.P1
    assert signal.labels["task"] == "run_weekly_strategy"
    assert signal.incident_key.startswith("ex:run_weekly_strategy:OOM:")


def test_exception_classified_from_traceback_when_message_is_vague() -> None:
    report = ExceptionReport.model_validate(
        {
            "task": "t",
            "message": "job failed",
            "traceback": "Traceback...\nsqlalchemy.exc.OperationalError: SSL SYSCALL error: EOF detected",
        }
    )
    assert from_exception(report, CLASSIFIER).error_type is ErrorType.SSL_FAIL
