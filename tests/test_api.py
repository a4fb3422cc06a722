"""HTTP ingestion and reads against a running app, on SQLite and on PostgreSQL."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from sqlalchemy import select

from receiver.db.schema import signals
from tests.conftest import TOKEN, load_fixture


@pytest.mark.parametrize("name", ["firing.json", "prom_firing.json"])
async def test_real_alertmanager_payloads_are_stored(make_service: Any, name: str) -> None:
    svc = await make_service()
    resp = await svc.post("/api/v1/alerts", load_fixture(name))
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["alerts"] == 1
    (incident,) = await svc.incidents()
    assert incident["id"] == body["incidents"][0]
    # No playbook handles ContainerDown: escalated as it is stored, no worker round needed.
    assert incident["status"] == "escalated"
    assert incident["escalation_reason"] == "no_playbook"
    assert incident["task_name"] == "ContainerDown"
    assert incident["source"] == "alertmanager"
    assert (
        svc.sample(
            "autoheal_signals_received_total", {"source": "alertmanager", "status": "firing"}
        )
        == 1
    )


async def test_resend_is_the_same_incident(make_service: Any) -> None:
    svc = await make_service()
    for _ in range(3):
        assert (await svc.post("/api/v1/alerts", load_fixture("prom_firing.json"))).status == 200
    (incident,) = await svc.incidents()
    assert incident["occurrences"] == 3
    assert svc.sample("autoheal_incidents_opened_total", {"error_type": "UNKNOWN"}) == 1


async def test_resolved_payload_resolves(make_service: Any) -> None:
    svc = await make_service()
    await svc.post("/api/v1/alerts", load_fixture("prom_firing.json"))
    resp = await svc.post("/api/v1/alerts", load_fixture("prom_resolved.json"))
    assert resp.status == 200
    (incident,) = await svc.incidents()
    assert incident["status"] == "resolved"
    assert incident["resolved_at"] is not None


async def test_group_of_alerts_each_become_incidents(make_service: Any, make_alert: Any) -> None:
    svc = await make_service()
    payload = make_alert(
        alerts=[{"fingerprint": f"fp{i}", "labels": {"n": str(i)}} for i in range(10)]
    )
    resp = await svc.post("/api/v1/alerts", payload)
    assert resp.status == 200
    assert len(set((await resp.json())["incidents"])) == 10
    data = await svc.get_json("/api/v1/incidents", limit=4, offset=0)
    assert data["total"] == 10 and len(data["items"]) == 4
    page2 = await svc.get_json("/api/v1/incidents", limit=4, offset=4)
    assert {i["id"] for i in data["items"]}.isdisjoint({i["id"] for i in page2["items"]})


async def test_newer_alertmanager_fields_and_unknown_extras(make_service: Any) -> None:
    svc = await make_service()
    payload = load_fixture("firing.json")
    payload.update(
        {"notification_reason": "new_alert", "routeLabels": {"team": "ops"}, "brandNew": 1}
    )
    payload["alerts"][0]["silencedBy"] = []
    assert (await svc.post("/api/v1/alerts", payload)).status == 200


async def test_unknown_fields_beyond_64_bit_integers_are_stored_exactly(make_service: Any) -> None:
    # The fast JSON encoder refuses such integers; the fallback must store them unchanged.
    svc = await make_service()
    payload = load_fixture("firing.json")
    payload["alerts"][0]["hugeCounter"] = 2**70
    assert (await svc.post("/api/v1/alerts", payload)).status == 200
    async with svc.db.reading() as conn:
        (stored,) = (await conn.execute(select(signals.c.payload))).scalars().all()
    assert stored["hugeCounter"] == 2**70


async def test_exception_report_and_signature_dedup(make_service: Any, make_exception: Any) -> None:
    svc = await make_service()
    first = await svc.post(
        "/api/v1/exceptions",
        make_exception(
            message='connection to server at "10.0.0.5", port 5432 failed: Connection refused (attempt 1)'
        ),
    )
    assert first.status == 202, await first.text()
    body = await first.json()
    assert body["error_type"] == "DB_UNREACHABLE"
    again = await svc.post(
        "/api/v1/exceptions",
        make_exception(
            message='connection to server at "10.0.0.9", port 5432 failed: Connection refused (attempt 2)'
        ),
    )
    assert (await again.json())["incident"] == body["incident"]
    other_task = await svc.post(
        "/api/v1/exceptions", make_exception(task="run_analysis_task", message="connection refused")
    )
    assert (await other_task.json())["incident"] != body["incident"]
    incident = await svc.incident(body["incident"])
    assert incident["occurrences"] == 2
    assert incident["task_name"] == "run_auto_import_task"
    assert incident["error_type"] == "DB_UNREACHABLE"
    assert incident["severity"] == "P2"
    assert incident["error_traceback"].startswith("Traceback")


async def test_client_idempotency_key(make_service: Any, make_exception: Any) -> None:
    svc = await make_service()
    for _ in range(2):
        await svc.post("/api/v1/exceptions", make_exception(id="run-42"))
    (incident,) = await svc.incidents()
    assert incident["occurrences"] == 2  # counted, stored once as a signal


async def test_minimal_exception_report(make_service: Any) -> None:
    svc = await make_service()
    resp = await svc.post("/api/v1/exceptions", {"task": "t", "message": "boom"})
    assert resp.status == 202
    assert (await resp.json())["error_type"] == "UNKNOWN"


def _with(payload: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    target: Any = payload
    keys = path.split(".")
    for key in keys[:-1]:
        target = target[int(key)] if isinstance(target, list) else target[key]
    if value is KeyError:
        del target[keys[-1]]
    else:
        target[keys[-1]] = value
    return payload


BAD_ALERTS = [
    ("version", "3", "version"),
    ("version", KeyError, "version"),
    ("alerts", [], "alerts"),
    ("alerts", "nope", "alerts"),
    ("alerts.0.labels", KeyError, "alerts.0.labels"),
    ("alerts.0.labels", {"a": 1}, "alerts.0.labels.a"),
    ("alerts.0.status", "burning", "alerts.0.status"),
    ("alerts.0.startsAt", "yesterday", "alerts.0.startsAt"),
    ("alerts.0.labels", {"big": "x" * 20_000}, "alerts.0.labels.big"),
    ("alerts.0.labels", {f"l{i}": "v" for i in range(200)}, "alerts.0.labels"),
    ("truncatedAlerts", -1, "truncatedAlerts"),
]


@pytest.mark.parametrize(("path", "value", "field"), BAD_ALERTS)
async def test_bad_alert_payloads_are_422_naming_the_field(
    make_service: Any, path: str, value: Any, field: str
) -> None:
    svc = await make_service()
    resp = await svc.post("/api/v1/alerts", _with(load_fixture("firing.json"), path, value))
    assert resp.status == 422
    body = await resp.json()
    assert body["error"] == "invalid_payload"
    assert any(e["field"].startswith(field) for e in body["errors"]), body
    assert await svc.incidents() == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"message": "m"}, "task"),
        ({"task": "t"}, "message"),
        ({"task": "", "message": "m"}, "task"),
        ({"task": "t" * 101, "message": "m"}, "task"),
        ({"task": "t", "message": "m", "labels": ["a"]}, "labels"),
        ({"task": "t", "message": 5}, "message"),
        ({"task": "t", "message": "m", "occurred_at": "soon"}, "occurred_at"),
        ([1, 2], "(body)"),
    ],
)
async def test_bad_exception_reports(make_service: Any, body: Any, field: str) -> None:
    svc = await make_service()
    resp = await svc.post("/api/v1/exceptions", body)
    assert resp.status == 422
    assert (await resp.json())["errors"][0]["field"] == field


async def test_malformed_bodies(make_service: Any) -> None:
    svc = await make_service()
    json_ct = {"Content-Type": "application/json"}
    cases = [
        (b"{not json", json_ct, 400, "invalid_json"),
        (b"", json_ct, 400, "invalid_json"),
        (b'{"task": "\xff\xfe"}', json_ct, 400, "bad_encoding"),
        (
            b"task=x",
            {"Content-Type": "application/x-www-form-urlencoded"},
            415,
            "unsupported_media_type",
        ),
        (b"{}", {"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
    ]
    for body, headers, status, error in cases:
        for path in ("/api/v1/alerts", "/api/v1/exceptions"):
            resp = await svc.post(path, body, headers=dict(headers))
            assert resp.status == status, (body, path, await resp.text())
            assert (await resp.json())["error"] == error


async def test_body_over_limit_is_413(make_service: Any) -> None:
    svc = await make_service(max_body_bytes=4096)
    payload = load_fixture("firing.json")
    payload["alerts"][0]["annotations"]["description"] = "x" * 10_000
    resp = await svc.post("/api/v1/alerts", payload)
    assert resp.status == 413

    # Chunked, so no Content-Length to refuse up front: the read limit catches it.
    async def chunks() -> Any:
        yield json.dumps(payload).encode()

    resp = await svc.client.post(
        "/api/v1/alerts",
        data=chunks(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    assert resp.status == 413
    assert await svc.incidents() == []


async def test_authentication(make_service: Any) -> None:
    svc = await make_service(basic_auth="alertmanager:pw")
    payload = load_fixture("firing.json")
    assert (await svc.post("/api/v1/alerts", payload, token=None)).status == 401
    assert (await svc.post("/api/v1/alerts", payload, token="wrong")).status == 401
    assert (await svc.client.get("/api/v1/incidents")).status == 401
    assert (await svc.client.post("/-/reload")).status == 401
    basic = "Basic " + base64.b64encode(b"alertmanager:pw").decode()
    resp = await svc.post("/api/v1/alerts", payload, token=None, headers={"Authorization": basic})
    assert resp.status == 200
    assert (await svc.post("/api/v1/alerts", payload)).status == 200  # bearer too
    # Probes and scrapes stay open.
    for path in ("/healthz", "/readyz", "/metrics"):
        assert (await svc.client.get(path)).status == 200


async def test_read_api_shapes(make_service: Any, make_exception: Any) -> None:
    svc = await make_service()
    await svc.post("/api/v1/exceptions", make_exception())
    (incident,) = await svc.incidents(status="open", error_type="DNS_FAIL")
    for field in (
        "id",
        "task_name",
        "error_type",
        "error_message",
        "severity",
        "status",
        "playbook_id",
        "retry_count",
        "resolved_at",
        "created_at",
    ):
        assert field in incident
    assert await svc.incidents(status="resolved") == []
    detail = await svc.incident(incident["id"])
    assert detail["heal_logs"] == []
    for bad in (
        {"status": "nope"},
        {"error_type": "NOPE"},
        {"limit": "x"},
        {"limit": "0"},
        {"offset": "-1"},
    ):
        resp = await svc.client.get(
            "/api/v1/incidents", params=bad, headers={"Authorization": f"Bearer {TOKEN}"}
        )
        assert resp.status == 400, bad
    for bad_id, status in (
        ("999999", 404),
        ("abc", 400),
        ("99999999999999999999", 404),
        ("-1", 404),
    ):
        resp = await svc.client.get(
            f"/api/v1/incidents/{bad_id}", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        assert resp.status == status
    playbooks = (await svc.get_json("/api/v1/playbooks"))["items"]
    assert len(playbooks) == 9  # the seed's 7 and scheduler.yaml's 2
    assert {"name", "success_count", "fail_count", "error_type", "match_pattern"} <= set(
        playbooks[0]
    )


async def test_health_ready_metrics(make_service: Any) -> None:
    svc = await make_service()
    assert (await svc.client.get("/healthz")).status == 200
    ready = await (await svc.client.get("/readyz")).json()
    assert ready["status"] == "ready" and ready["revision"]
    text = await (await svc.client.get("/metrics")).text()
    assert "autoheal_playbooks_loaded 9.0" in text


async def test_reload_keeps_running_set_on_bad_file(make_service: Any, playbooks_dir: Any) -> None:
    folder = playbooks_dir(
        "playbooks:\n  - name: one\n    error_type: OOM\n    action: {type: alert_only, params: {message: m}}\n"
    )
    svc = await make_service(playbooks=folder)
    (folder / "test.yaml").write_text("playbooks:\n  - name: one\n    error_type: NOPE\n")
    resp = await svc.post("/-/reload", {})
    assert resp.status == 422
    assert "error_type" in (await resp.json())["detail"]
    (folder / "more.yaml").unlink(missing_ok=True)
    (folder / "test.yaml").write_text(
        "playbooks:\n  - name: two\n    error_type: OOM\n    action: {type: alert_only, params: {message: m}}\n"
    )
    resp = await svc.post("/-/reload", {})
    assert resp.status == 200
    names = {p["name"]: p["is_active"] for p in (await svc.get_json("/api/v1/playbooks"))["items"]}
    assert names == {"one": False, "two": True}


NASTY_BODIES = [
    ("deep array", b"[" * 100_000 + b"]" * 100_000, 400),
    ("deep object", b'{"a":' * 50_000 + b"1" + b"}" * 50_000, 400),
    ("5000-digit integer", b'{"version": "4", "truncatedAlerts": ' + b"9" * 5000 + b"}", 400),
    (
        "NUL in a label",
        b'{"version": "4", "status": "firing", "alerts": [{"status": "firing", '
        b'"labels": {"a": "b\\u0000"}, "startsAt": "2026-11-28T00:00:00Z"}]}',
        400,
    ),
    (
        "NaN",
        b'{"version": "4", "status": "firing", "alerts": [{"status": "firing", '
        b'"labels": {"a": "b"}, "startsAt": NaN}]}',
        422,
    ),
    (
        "lone surrogate (not Unicode text)",
        b'{"version": "4", "status": "firing", "alerts": [{"status": "firing", '
        b'"labels": {"a": "\\ud800"}, "startsAt": "2026-11-28T00:00:00Z"}]}',
        400,
    ),
    (
        "year zero",
        b'{"version": "4", "status": "firing", "alerts": [{"status": "firing", '
        b'"labels": {"a": "b"}, "startsAt": "0000-01-01T00:00:00Z"}]}',
        422,
    ),
    (
        "Infinity in an unknown field (PostgreSQL JSON cannot store it)",
        b'{"version": "4", "status": "firing", "weird": {"x": [1e400]}, "alerts": [{"status": '
        b'"firing", "labels": {"a": "b"}, "startsAt": "2026-11-28T00:00:00Z"}]}',
        422,
    ),
    (
        "NaN in an alert's unknown field",
        b'{"version": "4", "status": "firing", "alerts": [{"status": "firing", "odd": NaN, '
        b'"labels": {"a": "b"}, "startsAt": "2026-11-28T00:00:00Z"}]}',
        422,
    ),
    ("null body", b"null", 422),
    ("string body", b'"alerts"', 422),
]


@pytest.mark.parametrize(
    ("name", "body", "status"), NASTY_BODIES, ids=[n for n, _, _ in NASTY_BODIES]
)
async def test_nasty_bodies_are_4xx_never_5xx(
    make_service: Any, name: str, body: bytes, status: int
) -> None:
    svc = await make_service()
    # Bodies refused before validation get the same 400 on both endpoints; the rest are
    # alert-shaped, so the exceptions endpoint refuses them as invalid reports (422).
    expected = {"/api/v1/alerts": status, "/api/v1/exceptions": 400 if status == 400 else 422}
    for path, want in expected.items():
        resp = await svc.post(path, body, headers={"Content-Type": "application/json"})
        assert resp.status == want, (path, await resp.text())
    assert await svc.incidents() == []


async def test_nul_in_a_scheduler_message_is_refused_not_retried_forever(make_service: Any) -> None:
    svc = await make_service()
    body = b'{"task": "t", "message": "bad\\u0000byte"}'
    resp = await svc.post("/api/v1/exceptions", body, headers={"Content-Type": "application/json"})
    assert resp.status == 400
    assert "NUL" in (await resp.json())["detail"]
