"""Normalise what clients send into Signals, with their dedup keys."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime

from receiver.classify import Classifier
from receiver.domain import (
    ESCALATION_ALERTNAME,
    ErrorType,
    Signal,
    Source,
)
from receiver.payloads import Alert, AlertmanagerWebhook, ExceptionReport, extras
from receiver.textmatch import message_signature

__all__ = ["from_exception", "from_webhook", "message_signature"]


def _label_fingerprint(labels: dict[str, str]) -> str:
    # Alertmanager always sends one; a hand-written payload may not.
    blob = "\x00".join(f"{k}\x00{v}" for k, v in sorted(labels.items()))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds")


def _alert_message(alert: Alert) -> str:
    a = alert.annotations
    return (
        a.get("summary")
        or a.get("description")
        or a.get("message")
        or alert.labels.get("alertname", "alert")
    )


def from_webhook(payload: AlertmanagerWebhook, classifier: Classifier) -> list[Signal]:
    """One Signal per alert of the group.

    Group-level fields (unknown ones included) are stored once per webhook, in the first
    signal's extra; the others name that signal (``{"group": {"in": key}}``). Copied into every
    alert, one 1 MB webhook of 1,000 alerts and a 700 KB unknown field stored 669 MB.
    autoheal's own escalation alerts (routed back here) give none: never healed.
    """
    group = {
        "receiver": payload.receiver,
        "groupKey": payload.group_key,
        "groupLabels": payload.group_labels,
        "externalURL": payload.external_url,
        "truncatedAlerts": payload.truncated_alerts,
    }
    if payload.notification_reason is not None:
        group["notification_reason"] = payload.notification_reason
    if payload.route_labels is not None:
        group["routeLabels"] = payload.route_labels
    grafana = payload.from_grafana
    if grafana:
        group |= {"orgId": payload.org_id, "title": payload.title, "state": payload.state}
        group["message"] = payload.message
    group.update(extras(payload))
    source, prefix = (Source.GRAFANA, "gf") if grafana else (Source.ALERTMANAGER, "am")
    result: list[Signal] = []
    for alert in payload.alerts:
        if alert.labels.get("alertname") == ESCALATION_ALERTNAME:
            continue
        fingerprint = alert.fingerprint or _label_fingerprint(alert.labels)
        # Grafana's times carry its server's offset: its keys use UTC, so an incident's
        # signals can be found again from its stored (UTC) startsAt.
        started = _iso(alert.starts_at.astimezone(UTC) if grafana else alert.starts_at)
        message = _alert_message(alert)
        text = "\n".join([message, *alert.annotations.values()])
        error_type = classifier.classify(alert.labels, text)
        result.append(
            Signal(
                source=source,
                idempotency_key=f"{prefix}:{fingerprint}:{started}:{alert.status}",
                incident_key=f"{prefix}:{fingerprint}:{started}",
                firing=alert.status == "firing",
                task_name=alert.labels.get("alertname", "alert")[:100],
                error_type=error_type,
                severity=classifier.severity(error_type, alert.labels.get("severity")),
                message=message,
                labels=dict(alert.labels),
                annotations=dict(alert.annotations),
                fingerprint=fingerprint,
                signature=message_signature(message),  # what knowledge is kept per
                starts_at=alert.starts_at,
                ends_at=alert.ends_at,
                extra={
                    "generatorURL": alert.generator_url,
                    "group": group if not result else {"in": result[0].idempotency_key},
                    **extras(alert),
                },
                links=_links(extras(alert)),
            )
        )
    return result


# Grafana's per-alert links, by the name people see.
_LINKS = {"dashboardURL": "dashboard", "panelURL": "panel", "silenceURL": "silence"}


def _links(fields: dict[str, object]) -> dict[str, str]:
    return {
        name: str(fields[key])[:2048]
        for key, name in _LINKS.items()
        if isinstance(fields.get(key), str) and str(fields[key]).startswith(("http://", "https://"))
    }


def from_exception(report: ExceptionReport, classifier: Classifier) -> Signal:
    labels = dict(report.labels)
    labels.setdefault("task", report.task)
    text_parts = [report.message]
    if report.exception_type:
        text_parts.insert(0, report.exception_type)
    text = "\n".join(text_parts)
    error_type = classifier.classify(labels, text)
    if error_type is ErrorType.UNKNOWN and report.traceback:
        error_type = classifier.classify(labels, report.traceback[-8192:])
    message = (
        f"{report.exception_type}: {report.message}" if report.exception_type else report.message
    )
    signature = message_signature(report.message)
    key = report.id or uuid.uuid4().hex
    return Signal(
        source=Source.SCHEDULER,
        idempotency_key=f"ex:{key}",
        incident_key=f"ex:{report.task}:{error_type.value}:{signature}",
        firing=True,
        task_name=report.task,
        error_type=error_type,
        severity=classifier.severity(error_type, report.severity),
        message=message,
        labels=labels,
        traceback=report.traceback,
        signature=signature,
        occurred_at=report.occurred_at,
        extra=extras(report),
    )
