"""The page for people on call (/ui): login and its cookie, CSRF on every form, escaping,
the security headers, keyset paging; then the whole of it in a real browser (Debian's
chromium driven by Playwright), with a screenshot of each page kept in test-artifacts/ui."""

from __future__ import annotations

import re
import shutil
from typing import Any

import pytest

from tests.conftest import ROOT, TOKEN, oom_alert, require, restart_playbook

ARTIFACTS = ROOT / "test-artifacts" / "ui"
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:500]
    return found[1]


async def login(svc: Any, user: str = "ana", password: str = TOKEN) -> Any:
    page = await svc.client.get("/ui/login")
    token = csrf_of(await page.text())
    return await svc.client.post(
        "/ui/login",
        data={"user": user, "password": password, "csrf": token, "next": "/ui/incidents"},
        allow_redirects=False,
    )


async def test_login_sets_a_strict_session_cookie_and_pages_need_it(make_service: Any) -> None:
    svc = await make_service()
    first = await svc.client.get("/ui/incidents", allow_redirects=False)
    assert first.status == 303
    assert first.headers["Location"].startswith("/ui/login?next=")
    form = await svc.client.get("/ui/login")
    assert form.status == 200
    csp = form.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp and "'unsafe-inline'" not in csp
    assert form.headers["X-Frame-Options"] == "DENY"

    wrong = await login(svc, password="nope")
    assert wrong.status == 401 and "Wrong name or password" in await wrong.text()
    assert "autoheal_session" not in wrong.cookies
    right = await login(svc)
    assert right.status == 303 and right.headers["Location"] == "/ui/incidents"
    cookie = right.headers.getall("Set-Cookie")
    (session,) = [c for c in cookie if c.startswith("autoheal_session=")]
    assert "HttpOnly" in session and "SameSite=Strict" in session and "Path=/ui" in session
    listing = await svc.client.get("/ui/incidents")
    assert listing.status == 200 and "<h1>Incidents</h1>" in await listing.text()

    # The API keeps its own authentication: a session cookie is not a bearer token.
    assert (await svc.client.get("/api/v1/incidents")).status == 401
    # A forged or foreign cookie is no session.
    svc.client.session.cookie_jar.clear()
    svc.client.session.cookie_jar.update_cookies({"autoheal_session": "forged.value.sig"})
    again = await svc.client.get("/ui/incidents", allow_redirects=False)
    assert again.status == 303


async def test_forms_need_the_session_csrf_token(make_service: Any) -> None:
    svc = await make_service()
    await login(svc)
    refused = await svc.client.post("/ui/pause", data={"reason": "deploy"}, allow_redirects=False)
    assert refused.status == 403
    assert (await svc.get_json("/api/v1/pause"))["status"] == "running"
    page = await svc.client.get("/ui/operations")
    token = csrf_of(await page.text())
    done = await svc.client.post(
        "/ui/pause",
        data={"reason": "deploy", "minutes": "30", "csrf": token},
        allow_redirects=False,
    )
    assert done.status == 303
    state = await svc.get_json("/api/v1/pause")
    assert (state["status"], state["by"], state["reason"]) == ("paused", "ana (ui)", "deploy")
    assert state["until"] is not None
    resumed = await svc.client.post("/ui/resume", data={"csrf": token}, allow_redirects=False)
    assert resumed.status == 303
    assert (await svc.get_json("/api/v1/pause"))["status"] == "running"


async def test_a_hostile_label_is_rendered_as_text(make_service: Any, make_alert: Any) -> None:
    svc = await make_service()
    alert = make_alert(
        alerts=[
            {
                "fingerprint": "hostile",
                "labels": {"alertname": "Odd", "note": HOSTILE},
                "annotations": {"summary": HOSTILE},
                "generatorURL": "javascript:alert(1)",
            }
        ]
    )
    assert (await svc.post("/api/v1/alerts", alert)).status == 200
    await login(svc)
    listing = await (await svc.client.get("/ui/incidents")).text()
    page = await (await svc.client.get("/ui/incidents/1")).text()
    for html in (listing, page):
        assert "<script>alert" not in html and "<img src=x" not in html
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert 'href="javascript:' not in page  # the generator URL is not made a link


async def test_incidents_page_by_page(make_service: Any, make_alert: Any) -> None:
    svc = await make_service()
    alerts = [{"fingerprint": f"f{i:03}", "labels": {"n": str(i)}} for i in range(120)]
    assert (await svc.post("/api/v1/alerts", make_alert(alerts=alerts))).status == 200
    await login(svc)
    seen: list[int] = []
    url = "/ui/incidents?status=escalated"
    for _ in range(4):
        html = await (await svc.client.get(url)).text()
        seen += [int(i) for i in re.findall(r'<a href="/ui/incidents/(\d+)">', html)]
        older = re.search(r'<a href="(/ui/incidents\?[^"]+)" rel="next">', html)
        if older is None:
            break
        url = older[1].replace("&amp;", "&")
    assert seen == list(range(120, 0, -1))  # every one once, newest first


@pytest.fixture
def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        require("chromium (apt-get install chromium)")
    assert path is not None
    return path


@pytest.mark.timeout(120)
async def test_on_call_in_a_real_browser(
    make_service: Any, playbooks_dir: Any, make_alert: Any, scripted: Any, chromium: str
) -> None:
    from playwright.async_api import async_playwright

    svc = await make_service(
        playbooks=playbooks_dir(restart_playbook(approval="required", verify_seconds=600))
    )
    alert = oom_alert(make_alert, container="db1", note=HOSTILE)
    assert (await svc.post("/api/v1/alerts", alert)).status == 200
    await svc.settle()
    base = str(svc.client.make_url("")).rstrip("/")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = await browser.new_page()
            dialogs: list[str] = []
            page.on("dialog", lambda d: dialogs.append(d.message))
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

            await page.goto(f"{base}/ui/incidents")
            assert page.url.startswith(f"{base}/ui/login")
            await page.screenshot(path=str(ARTIFACTS / "login.png"), full_page=True)
            await page.fill("input[name=user]", "ana")
            await page.fill("input[name=password]", TOKEN)
            await page.click("button[type=submit]")
            await page.wait_for_url(f"{base}/ui/incidents")
            await page.screenshot(path=str(ARTIFACTS / "incidents.png"), full_page=True)

            await page.select_option("select[name=status]", "awaiting_approval")
            await page.click(".filters button[type=submit]")
            await page.click("table.incidents a")
            await page.wait_for_selector("h1:has-text('Incident 1')")
            body = await page.inner_text("main")
            assert HOSTILE in body  # shown as the text it is
            assert "Approval" in body
            await page.screenshot(path=str(ARTIFACTS / "incident.png"), full_page=True)
            await page.click("button.approve")
            await page.wait_for_selector("p.done")
            assert "Approved" in await page.inner_text("p.done")
            await svc.settle()
            await page.reload()
            assert "verifying" in await page.inner_text("dl.facts")
            assert "scripted ok on db1" in await page.inner_text(".timeline")
            assert [c for _, c in scripted] == ["db1"]

            await page.click("nav >> text=Pause & quarantine")
            await page.fill("input[name=reason]", "database deploy")
            await page.click("form.pause button")
            await page.wait_for_selector("p.paused")
            assert "Paused by ana (ui)" in await page.inner_text("p.paused")
            await page.screenshot(path=str(ARTIFACTS / "operations.png"), full_page=True)
            await page.click("button.resume")
            await page.wait_for_selector("form.pause")

            for name in ("playbooks", "tasks"):
                await page.goto(f"{base}/ui/{name}")
                await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

            assert dialogs == []  # no script from a label ever ran
            assert errors == [], errors  # nothing the CSP refused, no script error
        finally:
            await browser.close()
    assert sorted(p.name for p in ARTIFACTS.glob("*.png")) == [
        "incident.png",
        "incidents.png",
        "login.png",
        "operations.png",
        "playbooks.png",
        "tasks.png",
    ]


async def _browser_login(page: Any, base: str) -> None:
    await page.goto(f"{base}/ui/incidents")
    await page.fill("input[name=user]", "ana")
    await page.fill("input[name=password]", TOKEN)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{base}/ui/incidents")


@pytest.mark.timeout(120)
async def test_live_refresh_in_a_real_browser(
    make_service: Any, playbooks_dir: Any, make_alert: Any, scripted: Any, chromium: str
) -> None:
    """With JavaScript on, the list and an active incident change in place (no reload: a
    mark left on the window survives), not while someone types in a filter, and an
    incident that ended stops refreshing."""
    from playwright.async_api import async_playwright

    svc = await make_service(
        playbooks=playbooks_dir(restart_playbook(approval="required", verify_seconds=600)),
        ui_refresh_seconds=2,
    )
    base = str(svc.client.make_url("")).rstrip("/")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = await browser.new_page()
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            fetched: list[str] = []
            page.on(
                "request", lambda r: fetched.append(r.url) if r.resource_type == "fetch" else None
            )
            await _browser_login(page, base)
            assert "No incident matches" in await page.inner_text("table.incidents")
            await page.evaluate("window.stayed = true")

            alert = oom_alert(make_alert, fp="live1", container="web1")
            assert (await svc.post("/api/v1/alerts", alert)).status == 200
            rows = "table.incidents a"
            await page.wait_for_selector(rows, timeout=8000)
            assert await page.locator(rows).count() == 1
            assert await page.evaluate("window.stayed === true")  # swapped in place

            # Someone typing in a filter is not interrupted: nothing changes under them.
            await page.focus("input[name=target]")
            await page.keyboard.type("local/")
            second = oom_alert(make_alert, fp="live2", container="web2")
            assert (await svc.post("/api/v1/alerts", second)).status == 200
            await page.wait_for_timeout(5000)  # two and a half refresh periods
            assert await page.locator(rows).count() == 1
            assert await page.input_value("input[name=target]") == "local/"
            await page.evaluate("document.activeElement.blur()")
            await page.wait_for_selector(f"{rows} >> nth=1", timeout=8000)

            # An incident awaiting a decision: approved elsewhere (the API), the page shows
            # the repair and its verification without a reload.
            await svc.settle()
            (first,) = [i for i in await svc.incidents() if i["fingerprint"] == "live1"]
            await page.goto(f"{base}/ui/incidents/{first['id']}")
            assert "awaiting_approval" in await page.inner_text("dl.facts")
            await page.evaluate("window.stayed = true")
            approved = await svc.post(f"/api/v1/incidents/{first['id']}/approve", {"by": "bo"})
            assert approved.status == 200
            await svc.settle()
            await page.wait_for_selector("dl.facts dd.status-verifying", timeout=8000)
            assert "scripted ok on web1" in await page.inner_text(".timeline")
            assert await page.evaluate("window.stayed === true")

            # Ended: the page says so and stops asking.
            ended = make_alert(status="resolved", alerts=[{"fingerprint": "live1"}])
            assert (await svc.post("/api/v1/alerts", ended)).status == 200
            await page.wait_for_selector("dl.facts dd.status-resolved", timeout=8000)
            asked = len(fetched)
            await page.wait_for_timeout(4500)
            assert len(fetched) == asked, fetched[asked:]
            assert errors == [], errors
        finally:
            await browser.close()


@pytest.mark.timeout(120)
async def test_every_decision_works_with_javascript_off(
    make_service: Any, playbooks_dir: Any, make_alert: Any, scripted: Any, chromium: str
) -> None:
    from playwright.async_api import async_playwright

    svc = await make_service(
        playbooks=playbooks_dir(restart_playbook(approval="required", verify_seconds=600)),
        ui_refresh_seconds=2,
    )
    for fp, name in (("nojs1", "db1"), ("nojs2", "db2")):
        assert (
            await svc.post("/api/v1/alerts", oom_alert(make_alert, fp=fp, container=name))
        ).status == 200
    await svc.settle()
    base = str(svc.client.make_url("")).rstrip("/")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            context = await browser.new_context(java_script_enabled=False)
            page = await context.new_page()
            fetched: list[str] = []
            page.on(
                "request", lambda r: fetched.append(r.url) if r.resource_type == "fetch" else None
            )
            await _browser_login(page, base)
            await page.wait_for_timeout(2500)  # past a refresh period: no script asked
            assert fetched == []
            await page.fill("input[name=target]", "container:db2")
            await page.click(".filters button[type=submit]")
            await page.click("table.incidents a")
            await page.click("button.deny")
            await page.wait_for_selector("p.done")
            assert "escalated" in await page.inner_text("dl.facts")
            await page.goto(f"{base}/ui/incidents?target=container:db1")
            await page.click("table.incidents a")
            await page.click("button.approve")
            await page.wait_for_selector("p.done")
            await page.click("nav >> text=Pause & quarantine")
            await page.fill("input[name=reason]", "no script needed")
            await page.click("form.pause button")
            await page.wait_for_selector("p.paused")
            await page.click("button.resume")
            await page.wait_for_selector("form.pause")
        finally:
            await browser.close()
    await svc.settle()
    assert [c for _, c in scripted] == ["db1"]
    decided = {i["target"]: i["status"] for i in await svc.incidents()}
    assert decided == {"container:db1": "verifying", "container:db2": "escalated"}
    assert (await svc.get_json("/api/v1/pause"))["status"] == "running"


def test_artifacts_stay_out_of_the_repository() -> None:
    assert "test-artifacts/" in (ROOT / ".gitignore").read_text().splitlines()


async def test_the_timeline_shows_the_signals_as_received(
    make_service: Any, make_alert: Any, make_exception: Any
) -> None:
    """Each alert and report that made an incident, with its resends, before and after it
    resolved (its key released): Alertmanager's, Grafana's and a scheduler's."""
    from tests.conftest import load_fixture

    svc = await make_service()
    firing = make_alert(alerts=[{"fingerprint": "tl1"}])
    for _ in range(2):  # a resend: counted on its signal
        assert (await svc.post("/api/v1/alerts", firing)).status == 200
    resolved = make_alert(status="resolved", alerts=[{"fingerprint": "tl1"}])
    assert (await svc.post("/api/v1/alerts", resolved)).status == 200
    grafana = load_fixture("grafana_firing.json")
    assert (await svc.post("/api/v1/alerts", grafana)).status == 200
    report = make_exception(task="sync_orders", message="Connection refused by db")
    for _ in range(2):
        assert (await svc.post("/api/v1/exceptions", report)).status == 202
    await login(svc)
    by_task = {i["task_name"]: i["id"] for i in await svc.incidents()}

    page = await (await svc.client.get(f"/ui/incidents/{by_task['ContainerDown']}")).text()
    assert "firing signal received (2 times" in page
    assert "resolved signal received" in page
    assert '"generatorURL": "http://127.0.0.1:19090/graph"' in page  # as it came
    page = await (await svc.client.get(f"/ui/incidents/{by_task['Scheduler memory high']}")).text()
    assert "firing signal received" in page and "dashboardURL" in page
    page = await (await svc.client.get(f"/ui/incidents/{by_task['sync_orders']}")).text()
    assert page.count("firing signal received") == 2  # two reports, each its own signal
