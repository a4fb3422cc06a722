"""The OpenAPI document against the routes, and schemathesis fuzzing a real `autoheal serve`
with it: no 5xx, every response as documented, every stored alert readable back (issue 16)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import CheckContext, not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from receiver import openapi
from receiver.app import create_app
from receiver.auth import OPEN_PATHS, is_page
from receiver.config import load_settings
from tests.conftest import TOKEN
from tests.serving import Served, start_served

APP = create_app(load_settings(None, database_url="sqlite+aiosqlite:///unused.db", docker_url=None))
DOCUMENT = openapi.build(APP)
SCHEMA = schemathesis.openapi.from_dict(DOCUMENT)
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_every_route_is_documented_and_every_operation_routed() -> None:
    routed = {
        (r.method.lower(), r.resource.canonical)
        for r in APP.router.routes()
        if r.method != "HEAD" and r.resource is not None and not is_page(r.resource.canonical)
    }
    documented = {(m, p) for p, ops in DOCUMENT["paths"].items() for m in ops}
    assert routed == documented
    public = {
        p for p, ops in DOCUMENT["paths"].items() for op in ops.values() if op.get("security") == []
    }
    assert public == set(OPEN_PATHS)
    assert DOCUMENT["openapi"] == "3.1.0"


def test_a_handler_without_a_description_is_an_error() -> None:
    from aiohttp import web

    app = web.Application()

    async def undocumented(request: web.Request) -> web.Response:
        return web.Response()

    app.router.add_get("/x", undocumented)
    with pytest.raises(LookupError, match="GET /x"):
        openapi.build(app)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("openapi")
    server = start_served(tmp, {"AUTOHEAL_HEADER_TIMEOUT_SECONDS": "5"})
    yield server
    log = server.stop()
    assert "Traceback" not in log, log[-3000:]


def test_the_served_document_is_the_built_one(served: Served) -> None:
    resp = requests.get(f"{served.url}{openapi.PATH}", timeout=10)
    assert resp.status_code == 200
    assert resp.json() == json.loads(json.dumps(DOCUMENT))


def readable_back(ctx: CheckContext, response: Any, case: Any) -> bool | None:
    """A 2xx for an alert or a report means stored: each incident it names can be read."""
    if response.status_code >= 300 or case.method != "POST":
        return None
    body = response.json()
    if case.path == "/api/v1/alerts":
        ids = [i for i in body["incidents"] if i is not None]
    elif case.path == "/api/v1/exceptions":
        ids = [body["incident"]] if body["incident"] is not None else []
    else:
        return None
    base = response.request.url.split("/api/", 1)[0]
    for incident_id in ids:
        got = requests.get(f"{base}/api/v1/incidents/{incident_id}", headers=AUTH, timeout=10)
        assert got.status_code == 200, (incident_id, got.text[:300])
    return True


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    readable_back,
]


@SCHEMA.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,  # the same examples on every run: a failure here is reproducible
)
def test_fuzzed_requests_get_documented_answers(case: Any, served: Served) -> None:
    case.call_and_validate(base_url=served.url, headers=dict(AUTH), checks=CHECKS, timeout=15)


# Hypothesis, for the shapes a schema cannot describe: dates at the edges of what parses,
# huge unknown fields, compressed bodies (some corrupt), duplicate keys, deep nesting.
from datetime import datetime, timedelta, timezone  # noqa: E402

from hypothesis import strategies as st  # noqa: E402

from tests.conftest import load_fixture  # noqa: E402

_EDGES = [
    datetime(9999, 12, 31, 23, 59, 59),  # past the end of datetime's range once in UTC
    datetime(1, 1, 1),  # Go's zero time, and before the start of the range in UTC
    datetime(1969, 12, 31, 23, 59, 59),
    datetime(1970, 1, 1),
    datetime(2199, 12, 31, 23, 59, 59),
    datetime(2200, 1, 1),
]
MOMENTS = st.builds(
    lambda moment, minutes: moment.replace(tzinfo=timezone(timedelta(minutes=minutes))),
    st.one_of(
        st.sampled_from(_EDGES),
        st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)),
    ),
    st.sampled_from([-1439, -60, 0, 60, 1439]) | st.integers(-1439, 1439),
)


def _nested(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth


@st.composite
def webhook_bodies(draw: st.DrawFn) -> tuple[bytes, dict[str, str]]:
    payload = load_fixture("firing.json")
    alert = payload["alerts"][0]
    alert["fingerprint"] = draw(st.text("0123456789abcdef", min_size=1, max_size=16))
    alert["startsAt"] = draw(MOMENTS).isoformat()
    if draw(st.booleans()):
        alert["endsAt"] = draw(MOMENTS).isoformat()
    text = json.dumps(payload)
    extra = draw(
        st.sampled_from(["none", "huge", "nested", "duplicate", "escapes", "nul", "unicode"])
    )
    if extra == "huge":
        size = draw(st.integers(1, 1_100_000))
        text = text[:-1] + f', "somethingNew": "{"x" * size}"}}'
    elif extra == "nested":
        text = text[:-1] + f', "deep": {_nested(draw(st.integers(1, 5000)))}}}'
    elif extra == "duplicate":
        text = '{"version": "3", "status": "resolved", ' + text[1:]  # the later keys win
    elif extra == "escapes":
        text = text[:-1] + ', "path": "C:\\\\u0000\\\\data\\\\"}'
    elif extra == "nul":
        text = text[:-1] + ', "x": "a\\u0000b"}'
    elif extra == "unicode":
        text = text[:-1] + f', "u": {json.dumps(draw(st.text(max_size=50)))}}}'
    body = text.encode()
    headers = {"Content-Type": "application/json", **AUTH}
    encoding = draw(st.sampled_from(["identity", "gzip", "deflate", "gzip-corrupt", "br"]))
    if encoding == "gzip":
        import gzip

        body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
    elif encoding == "deflate":
        import zlib

        body, headers["Content-Encoding"] = zlib.compress(body), "deflate"
    elif encoding == "gzip-corrupt":
        import gzip

        packed = gzip.compress(body)
        body = packed[: draw(st.integers(0, len(packed)))] + draw(st.binary(max_size=8))
        headers["Content-Encoding"] = "gzip"
    elif encoding == "br":
        body, headers["Content-Encoding"] = draw(st.binary(max_size=64)), "br"
    return body, headers


@pytest.mark.parametrize("path", ["/api/v1/alerts"])
def test_hypothesis_shapes_never_5xx_and_stored_ones_read_back(served: Served, path: str) -> None:
    from hypothesis import given

    @given(webhook_bodies())
    @settings(
        max_examples=80, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
    )
    def run(sample: tuple[bytes, dict[str, str]]) -> None:
        body, headers = sample
        resp = requests.post(f"{served.url}{path}", data=body, headers=headers, timeout=30)
        assert resp.status_code < 500, (resp.status_code, resp.text[:300])
        if not resp.headers["Content-Type"].startswith("application/json"):
            # Refused by the HTTP parser before the app (an encoding it cannot decode): a
            # short plain-text 400, as aiohttp answers.
            assert resp.status_code == 400 and len(resp.content) < 200, resp.text[:300]
        if resp.status_code < 300:
            for incident_id in resp.json()["incidents"]:
                got = requests.get(
                    f"{served.url}/api/v1/incidents/{incident_id}", headers=AUTH, timeout=10
                )
                assert got.status_code == 200

    run()


def test_exception_dates_at_the_edges(served: Served) -> None:
    from hypothesis import given

    @given(MOMENTS, st.text(min_size=1, max_size=40).filter(str.strip))
    @settings(
        max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
    )
    def run(moment: datetime, message: str) -> None:
        report = {"task": "t", "message": message, "occurred_at": moment.isoformat()}
        resp = requests.post(
            f"{served.url}/api/v1/exceptions", json=report, headers=AUTH, timeout=30
        )
        assert resp.status_code in (202, 400, 422), (resp.status_code, resp.text[:300])
        if resp.status_code == 422:
            assert "occurred_at" in resp.text or "message" in resp.text
        if resp.status_code == 202:
            incident = resp.json()["incident"]
            got = requests.get(
                f"{served.url}/api/v1/incidents/{incident}", headers=AUTH, timeout=10
            )
            assert got.status_code == 200

    run()


def test_the_fuzzing_left_the_process_clean(served: Served) -> None:
    """Runs after the fuzzing (file order): nothing it sent made the server log a traceback."""
    log = Path(served.log).read_text(errors="replace")
    assert "Traceback" not in log
    assert " ERROR " not in log, [line for line in log.splitlines() if " ERROR " in line][:5]
