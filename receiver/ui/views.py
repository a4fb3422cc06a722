"""The pages: incidents (filters, keyset paging), one incident's timeline, playbooks and
what was learned, declared tasks, pause and quarantine; and the forms people decide with.

Every page is rendered on the server (it works with JavaScript off); every value goes
through Jinja's autoescape; every form carries the session's CSRF token; every decision is
recorded with the logged-in person's name.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import aiohttp_jinja2
from aiohttp import web
from multidict import MultiDictProxy

from receiver import appkeys, controls, evidence
from receiver.api.incidents import record_decision
from receiver.approval import NotAwaiting
from receiver.db import repo
from receiver.domain import ErrorType, EscalationReason, IncidentStatus
from receiver.lockout import UI
from receiver.notify import announcer
from receiver.taskwatch import standing
from receiver.ui.session import Session, Sessions, csrf_ok

log = logging.getLogger(__name__)
SESSIONS: web.AppKey[Sessions] = web.AppKey("ui_sessions", Sessions)
FORM = web.RequestKey("ui_form", MultiDictProxy)  # a checked form, for its view
PAGE = 50

routes = web.RouteTableDef()
View = Callable[[web.Request, Session], Awaitable[web.StreamResponse]]


def page(template: str) -> Callable[[View], Callable[[web.Request], Awaitable[Any]]]:
    """A page for a logged-in person; its context gets the session and the current path."""

    def wrap(view: View) -> Callable[[web.Request], Awaitable[Any]]:
        async def handler(request: web.Request) -> Any:
            session = request.app[SESSIONS].current(request)
            if session is None:
                raise web.HTTPSeeOther("/ui/login?" + urlencode({"next": request.path_qs}))
            result = await view(request, session)
            if isinstance(result, web.StreamResponse):
                return result
            context = {
                "session": session,
                "path": request.path,
                "open": _open(request),
                "refresh_seconds": request.app[appkeys.SETTINGS].ui_refresh_seconds,
            }
            return aiohttp_jinja2.render_template(template, request, {**context, **result})

        return handler

    return wrap


def form_action(view: View) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """A POSTed form: logged in, and its CSRF token matches the session's."""

    async def handler(request: web.Request) -> web.StreamResponse:
        session = request.app[SESSIONS].current(request)
        if session is None:
            raise web.HTTPSeeOther("/ui/login")
        form = await request.post()
        if not csrf_ok(session, str(form.get("csrf", ""))):
            raise web.HTTPForbidden(text="the form is stale or came from elsewhere: reload it")
        request[FORM] = form
        return await view(request, session)

    return handler


def _open(request: web.Request) -> bool:
    return request.app[SESSIONS].open


# -- login ----------------------------------------------------------------------------------


@routes.get("/ui/login")
async def login_form(request: web.Request) -> web.StreamResponse:
    sessions = request.app[SESSIONS]
    if sessions.open:
        raise web.HTTPSeeOther("/ui/incidents")
    return _login_page(request, _next(request.query.get("next")), failed=False)


def _login_page(
    request: web.Request, target: str, *, failed: bool, retry_after: int | None = None
) -> web.StreamResponse:
    sessions = request.app[SESSIONS]
    token = sessions.new_login_token()
    status = 429 if retry_after is not None else 401 if failed else 200
    response = aiohttp_jinja2.render_template(
        "login.html",
        request,
        {"next": target, "failed": failed, "csrf": token, "retry_after": retry_after},
        status=status,
    )
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    sessions.keep_login_token(request, response, token)
    return response


@routes.post("/ui/login")
async def login(request: web.Request) -> web.StreamResponse:
    sessions = request.app[SESSIONS]
    form = await request.post()
    user, password = str(form.get("user", "")).strip(), str(form.get("password", ""))
    target = _next(str(form.get("next", "")))
    if not sessions.login_token_ok(request, str(form.get("csrf", ""))):
        raise web.HTTPForbidden(text="the login form is stale: reload it")
    lockout, db = request.app[appkeys.LOCKOUT], request.app[appkeys.DATABASE]
    address = lockout.address(request)
    # Every replica's failures are read before the password is looked at: while the address
    # is locked out even the right one is refused (else a guess would still tell).
    held = await lockout.check(db, address, UI)
    if held is not None:
        return _login_page(request, target, failed=False, retry_after=held)
    if not user or not sessions.check_login(user, password):
        locked = await lockout.failed(db, address, UI)
        return _login_page(request, target, failed=True, retry_after=locked)
    response = web.HTTPSeeOther(target)
    sessions.start(request, response, user)
    log.info("page login: %s from %s", user[:100], address)  # who decides is recorded too
    raise response


@routes.post("/ui/logout")
async def logout(request: web.Request) -> web.StreamResponse:
    response = web.HTTPSeeOther("/ui/login")
    request.app[SESSIONS].end(response)
    raise response


def _next(value: str | None) -> str:
    """Where to go after logging in: a page of ours, never another site."""
    if value and value.startswith("/ui/") and not value.startswith("//"):
        return value
    return "/ui/incidents"


# -- incidents ------------------------------------------------------------------------------


@routes.get("/ui")
async def home(request: web.Request) -> web.StreamResponse:
    raise web.HTTPSeeOther("/ui/incidents")


@routes.get("/ui/incidents")
@page("incidents.html")
async def incidents_page(request: web.Request, session: Session) -> Any:
    q = request.query
    status = q.get("status") or None
    if status not in (None, *IncidentStatus.__members__.values()):
        status = None
    error_type = q.get("error_type") or None
    if error_type not in (None, *ErrorType.__members__):
        error_type = None
    target = (q.get("target") or "").strip()[:300] or None
    since_hours = _number(q.get("since_hours"))
    since = datetime.now(UTC) - timedelta(hours=since_hours) if since_hours else None
    before = _number(q.get("before"))
    async with request.app[appkeys.DATABASE].reading() as conn:
        rows, more = await repo.reports.incidents_page(
            conn,
            status=status,
            error_type=error_type,
            target=target,
            since=since,
            before=int(before) if before else None,
            limit=PAGE,
        )
    filters = {
        "status": status or "",
        "error_type": error_type or "",
        "target": target or "",
        "since_hours": q.get("since_hours", ""),
    }
    older = None
    if more and rows:
        kept = {k: v for k, v in filters.items() if v}
        older = "?" + urlencode({**kept, "before": rows[-1]["id"]})
    return {
        "rows": rows,
        "filters": filters,
        "older": older,
        "statuses": [s.value for s in IncidentStatus],
        "error_types": list(ErrorType.__members__),
        "refresh": True,
    }


@routes.get("/ui/incidents/{id:\\d+}")
@page("incident.html")
async def incident_page(request: web.Request, session: Session) -> Any:
    incident_id = int(request.match_info["id"])
    if not 0 < incident_id < 2**31:
        raise web.HTTPNotFound(text=f"no incident {incident_id}")
    async with request.app[appkeys.DATABASE].reading() as conn:
        seen = await repo.reports.timeline(conn, incident_id)
        if seen is None:
            raise web.HTTPNotFound(text=f"no incident {incident_id}")
        row, logs = seen.incident, seen.heal_logs
        similar = (
            await conn.run_sync(repo.knowledge.similar, row["error_message"])
            if row["escalation_reason"] == EscalationReason.NO_PLAYBOOK
            else []
        )
    for log in logs:
        log["evidence_summary"] = evidence.summary(log.get("evidence"))
    return {
        "incident": row,
        "logs": logs,
        "notices": seen.notices,
        "signals": seen.signals,
        "similar": similar,
        "links": _safe_links(row),
        "done": request.query.get("done", ""),
        "refresh": row["status"] not in ("resolved", "escalated"),
    }


@routes.post("/ui/incidents/{id:\\d+}/{verdict:approve|deny}")
@form_action
async def decide(request: web.Request, session: Session) -> web.StreamResponse:
    incident_id = int(request.match_info["id"])
    approve = request.match_info["verdict"] == "approve"
    try:
        await record_decision(request.app, incident_id, approve, session.who)
        done = "approved" if approve else "denied"
    except NotAwaiting:
        done = "not-awaiting"
    raise web.HTTPSeeOther(f"/ui/incidents/{incident_id}?done={done}")


def _safe_links(row: dict[str, Any]) -> list[tuple[str, str]]:
    """The alert's source and Grafana's links, http(s) only (a label cannot make a
    javascript: link)."""
    found = [("alert source", row.get("generator_url") or "")]
    found += sorted((row.get("links") or {}).items())
    return [(name, url) for name, url in found if url.startswith(("http://", "https://"))]


# -- playbooks, tasks -----------------------------------------------------------------------


@routes.get("/ui/playbooks")
@page("playbooks.html")
async def playbooks_page(request: web.Request, session: Session) -> Any:
    async with request.app[appkeys.DATABASE].reading() as conn:
        playbooks = await repo.list_playbooks(conn)
        learned = await repo.knowledge.list_knowledge(
            conn, error_type=None, playbook=None, limit=200
        )
    for p in playbooks:
        tried = p["success_count"] + p["fail_count"]
        p["ratio"] = f"{p['success_count'] / tried:.0%}" if tried else "-"
    return {"playbooks": playbooks, "learned": learned}


@routes.get("/ui/tasks")
@page("tasks.html")
async def tasks_page(request: web.Request, session: Session) -> Any:
    declared = request.app[appkeys.CATALOG].current.tasks
    async with request.app[appkeys.DATABASE].reading() as conn:
        found = await standing(conn, declared, datetime.now(UTC))
    rows = []
    for task, state, heard in found:
        if state is None:
            rows.append({"task": task, "state": "not loaded yet"})
        else:
            rows.append(
                {"task": task, "state": state.state.value, "due": state.due, "heard": heard}
            )
    return {"rows": rows, "refresh": True}


# -- pause and quarantine -------------------------------------------------------------------


@routes.get("/ui/operations")
@page("operations.html")
async def operations_page(request: web.Request, session: Session) -> Any:
    async with request.app[appkeys.DATABASE].reading() as conn:
        paused = await repo.pause.read(conn, datetime.now(UTC))
        held = await repo.quarantine.list_held(conn)
    return {"paused": paused, "held": held, "done": request.query.get("done", "")}


@routes.post("/ui/pause")
@form_action
async def pause(request: web.Request, session: Session) -> web.StreamResponse:
    form = request[FORM]
    reason = str(form.get("reason", "")).strip()[:500]
    if not reason:
        raise web.HTTPSeeOther("/ui/operations?done=reason-needed")
    minutes = _number(str(form.get("minutes", "")))
    now = datetime.now(UTC)
    until = now + timedelta(minutes=min(minutes, 60 * 24 * 30)) if minutes else None
    announce = announcer(request.app[appkeys.SETTINGS])
    await controls.pause(request.app[appkeys.DATABASE], announce, reason, session.who, now, until)
    raise web.HTTPSeeOther("/ui/operations?done=paused")


@routes.post("/ui/resume")
@form_action
async def resume(request: web.Request, session: Session) -> web.StreamResponse:
    announce = announcer(request.app[appkeys.SETTINGS])
    db = request.app[appkeys.DATABASE]
    was, _ = await controls.resume(db, announce, session.who, datetime.now(UTC))
    if appkeys.WORKER in request.app:
        request.app[appkeys.WORKER].wake()
    raise web.HTTPSeeOther("/ui/operations?done=" + ("resumed" if was else "not-paused"))


@routes.post("/ui/quarantine/lift")
@form_action
async def lift(request: web.Request, session: Session) -> web.StreamResponse:
    target = str(request[FORM].get("target", ""))[:300]
    lifted = await controls.lift(
        request.app[appkeys.DATABASE], target, session.who, datetime.now(UTC)
    )
    raise web.HTTPSeeOther("/ui/operations?done=" + ("lifted" if lifted else "not-quarantined"))


def _number(value: str | None) -> float:
    try:
        number = float(value or 0)
    except ValueError:
        return 0.0
    return number if 0 < number < 2**31 else 0.0
