"""Shared fixtures: both stores (SQLite file and the real PostgreSQL), app factories, payloads.

With CI=true a store or program that cannot be reached fails the test instead of skipping it.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from receiver import appkeys
from receiver.app import create_app
from receiver.config import Settings, load_settings
from receiver.db.engine import open_database
from receiver.db.migrate import upgrade
from receiver.db.repo._sql import ACTIVE
from receiver.db.schema import incidents
from tests.scripted_action import WITH_SCRIPTED
from tests.telegram_standin import TelegramStandIn

ROOT = Path(__file__).resolve().parent.parent
# Real payloads a real Alertmanager 0.25 sent (copied from shared/fixtures/alertmanager).
FIXTURES = Path(__file__).resolve().parent / "fixtures"

PG_ADMIN_DSN = os.environ.get("AUTOHEAL_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
TOKEN = "test-token-123"
BOT_TOKEN = "123456:SECRET-bot-token-abc"  # the Telegram stand-in's


def require(reason: str) -> None:
    """Skip on a laptop without the program; fail in CI, where everything must run."""
    if IN_CI:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)  # only off CI (the line above fails under CI=true)


async def until(check: Callable[[], Awaitable[Any]], within: float, what: str) -> Any:
    """Poll ``check`` until it returns something truthy (returned), for at most ``within`` s."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        value = await check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"{what}: not within {within}s")
        await asyncio.sleep(0.1)


def load_fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


async def _pg(sql: list[str], dsn: str = PG_ADMIN_DSN) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        for statement in sql:
            await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str | None]:
    """A fresh PostgreSQL database for this run, dropped at the end (None if unreachable)."""
    name = f"autoheal_{uuid.uuid4().hex[:10]}"
    try:
        asyncio.run(_pg([f'CREATE DATABASE "{name}"']))
    except (TimeoutError, OSError) as exc:
        print(f"PostgreSQL unreachable: {exc}")
        yield None
        return
    yield name
    asyncio.run(
        _pg(
            [
                f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'",
                f'DROP DATABASE IF EXISTS "{name}"',
            ]
        )
    )


def pg_url(name: str) -> str:
    return f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Every store test runs on the embedded SQLite file and on the real PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path}/autoheal.db"
    else:
        name = request.getfixturevalue("pg_database")
        if name is None:
            require("PostgreSQL at 127.0.0.1:5432")
        # Each test starts from an empty schema.
        asyncio.run(
            _pg(
                ["DROP SCHEMA public CASCADE", "CREATE SCHEMA public"],
                f"postgresql://postgres@127.0.0.1:5432/{name}",
            )
        )
        url = pg_url(name)
    if "fresh_schema" not in request.fixturenames:
        # Migrated here, in-process: an app on an empty database would spawn
        # `autoheal db upgrade` (tested on its own in test_store.py).
        asyncio.run(_migrate(url))
    return url


async def _migrate(url: str) -> None:
    db = open_database(url)
    try:
        await upgrade(db)
    finally:
        await db.dispose()


@pytest.fixture
def fresh_schema() -> None:
    """Ask store_url for an empty database: the app must migrate it itself."""


@pytest.fixture
def playbooks_dir(tmp_path: Path) -> Callable[[str], Path]:
    """Write a playbooks directory: the bundled classifier plus the given playbook YAML."""

    def make(text: str) -> Path:
        folder = tmp_path / f"playbooks-{uuid.uuid4().hex[:6]}"
        folder.mkdir()
        (folder / "classifiers.yaml").write_text(
            (ROOT / "playbooks" / "classifiers.yaml").read_text()
        )
        (folder / "test.yaml").write_text(text)
        return folder

    return make


@pytest.fixture
def make_settings(store_url: str) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": store_url,
            "auth_token": TOKEN,
            "worker_poll_seconds": 0.05,
            "retry_backoff_seconds": 0,
            "default_verify_seconds": 0.2,
            "docker_url": None,
            "worker": False,
        }
        values.update(overrides)
        return load_settings(None, **values)

    return make


def playbook_yaml(
    action: str, params: str, *, name: str = "test playbook", error_type: str = "OOM", **fields: Any
) -> str:
    """One playbook as YAML; ``params`` is a YAML flow mapping, ``fields`` go in as written."""
    lines = [
        "playbooks:",
        f"  - name: {name}",
        f"    error_type: {error_type}",
        f"    action: {{type: {action}, params: {params}}}",
    ]
    lines += [f"    {key}: {value}" for key, value in fields.items()]
    return "\n".join(lines) + "\n"


def restart_playbook(**fields: Any) -> str:
    """ "restart": the scripted action on the alert's container, no cooldown unless given."""
    values: dict[str, Any] = {"cooldown_minutes": 0, **fields}
    return playbook_yaml("scripted", "{container: '${labels.container}'}", name="restart", **values)


def lifecycle_playbook(action: str, params: str, **fields: Any) -> str:
    """A playbook named "fix it": retries bounded, no cooldown unless a test wants one."""
    return playbook_yaml(
        action, params, name="fix it", **{"max_retries": 3, "cooldown_minutes": 0, **fields}
    )


@pytest.fixture
def scripted() -> Iterator[list[tuple[int, str]]]:
    """The ``scripted`` action's runs (tests/scripted_action.py), from a clean slate; the
    tests' apps are given it with the built-in actions (``WITH_SCRIPTED``)."""
    from tests import scripted_action

    scripted_action.RUNS.clear()
    scripted_action.SPANS.clear()
    yield scripted_action.RUNS


def oom_alert(make_alert: Callable[..., dict[str, Any]], fp: str = "fp", **labels: str) -> Any:
    """A one-alert webhook that classifies as OOM (alertname mapping)."""
    return make_alert(
        alerts=[{"fingerprint": fp, "labels": {"alertname": "ContainerOOMKilled", **labels}}]
    )


class Service:
    """A running app under test: HTTP client plus handles on its worker and store."""

    def __init__(self, client: TestClient[Any, Any]) -> None:
        self.client = client
        self.app: web.Application = client.server.app
        self._sender: Any = None

    @property
    def worker(self) -> Any:
        return self.app[appkeys.WORKER]

    @property
    def db(self) -> Any:
        return self.app[appkeys.DATABASE]

    async def post(self, path: str, body: Any, *, token: str | None = TOKEN, **kw: Any) -> Any:
        headers = kw.pop("headers", {})
        if token is not None:
            headers.setdefault("Authorization", f"Bearer {token}")
        if not isinstance(body, bytes | str):
            body = json.dumps(body)
            headers.setdefault("Content-Type", "application/json")
        return await self.client.post(path, data=body, headers=headers, **kw)

    async def get_json(self, path: str, **params: Any) -> Any:
        resp = await self.client.get(
            path, params=params, headers={"Authorization": f"Bearer {TOKEN}"}
        )
        assert resp.status == 200, await resp.text()
        return await resp.json()

    async def incident(self, incident_id: int) -> dict[str, Any]:
        data: dict[str, Any] = await self.get_json(f"/api/v1/incidents/{incident_id}")
        return data

    async def incidents(self, **params: Any) -> list[dict[str, Any]]:
        data = await self.get_json("/api/v1/incidents", **params)
        items: list[dict[str, Any]] = data["items"]
        return items

    async def only_incident(self) -> dict[str, Any]:
        """The one incident the test made, with its heal logs."""
        (item,) = await self.incidents()
        return await self.incident(item["id"])

    async def settle(self, within: float = 10) -> None:
        """Let the worker do everything that is due now, then check that only active
        incidents have a next attempt (the worker's claim reads that index alone)."""
        await self.worker.drain(within)
        async with self.db.reading() as conn:
            stray = await conn.scalar(
                select(func.count()).where(
                    incidents.c.status.not_in(ACTIVE), incidents.c.next_attempt_at.is_not(None)
                )
            )
        assert stray == 0, "an incident that ended still has a next attempt"

    async def deliver(self) -> int:
        """Run the outbox sender once, as its loop would (tests drive it)."""
        from receiver.notify import build_notifiers
        from receiver.notify.sender import OutboxSender

        if self._sender is None:
            settings = self.app[appkeys.SETTINGS]
            self._sender = OutboxSender(
                self.db,
                build_notifiers(settings),
                self.app[appkeys.METRICS],
                f"test-sender-{id(self)}",  # one name per sender, as per replica
                batch_seconds=settings.notify_batch_seconds,
                summary_after=settings.notify_summary_after,
            )
        settled: int = await self._sender.flush()
        return settled

    async def close_sender(self) -> None:
        if self._sender is not None:
            for notifier in self._sender.notifiers.values():
                await notifier.close()
            self._sender = None

    def sample(self, name: str, labels: dict[str, str] | None = None) -> float:
        value = self.app[appkeys.REGISTRY].get_sample_value(name, labels or {})
        return float(value or 0.0)


@pytest.fixture
async def make_service(
    aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]],
    make_settings: Callable[..., Settings],
) -> AsyncIterator[Callable[..., Awaitable[Service]]]:
    made: list[Service] = []

    async def make(**overrides: Any) -> Service:
        client = await aiohttp_client(create_app(make_settings(**overrides), actions=WITH_SCRIPTED))
        made.append(Service(client))
        return made[-1]

    yield make
    for svc in made:
        await svc.close_sender()


@pytest.fixture
def make_alert() -> Callable[..., dict[str, Any]]:
    """An Alertmanager v4 payload from the real fixture, with overrides per alert."""

    def make(
        status: str = "firing", alerts: list[dict[str, Any]] | None = None, **labels: str
    ) -> dict[str, Any]:
        payload = copy.deepcopy(
            load_fixture("firing.json" if status == "firing" else "resolved.json")
        )
        base = payload["alerts"][0]
        items = alerts if alerts is not None else [{}]
        payload["alerts"] = []
        for over in items:
            alert = copy.deepcopy(base)
            alert["labels"].update(labels)
            alert["labels"].update(over.pop("labels", {}))
            alert["annotations"].update(over.pop("annotations", {}))
            alert.update(over)
            payload["alerts"].append(alert)
        payload["status"] = status
        return payload

    return make


@pytest.fixture
def make_exception() -> Callable[..., dict[str, Any]]:
    def make(**overrides: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "task": "run_auto_import_task",
            "message": 'could not translate host name "momo-db" to address: '
            "Temporary failure in name resolution",
            "exception_type": "OperationalError",
            "traceback": "Traceback (most recent call last):\n  ...",
            "severity": "P2",
            "labels": {"container": "momo-scheduler", "host": "web1"},
        }
        body.update(overrides)
        return body

    return make


@pytest.fixture
async def telegram() -> AsyncIterator[TelegramStandIn]:
    """A local stand-in of the Telegram Bot API (test_approval has its own, another bot)."""
    standin = TelegramStandIn(BOT_TOKEN)
    await standin.start()
    yield standin
    await standin.stop()


@pytest.fixture
def programs() -> None:
    """Prometheus and Alertmanager (with promtool and amtool) installed."""
    for program in ("prometheus", "prometheus-alertmanager"):
        if shutil.which(program) is None:
            require(f"{program} (apt-get install prometheus prometheus-alertmanager)")


@pytest.fixture(scope="session")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """podman's Docker-compatible API with real containers (busybox-static image)."""
    from tests.realprograms import start_podman, stop_podman

    if shutil.which("podman") is None or shutil.which("busybox") is None:
        require("podman and busybox-static (apt-get install podman runc busybox-static)")
    engine = start_podman(tmp_path_factory.mktemp("podman"))
    try:
        yield engine
    finally:
        stop_podman(engine)


@dataclass
class SSHBed:
    """Two real sshd: ``target`` (its sessions reach podman through the Docker CLI) and
    ``jump``; one client key both accept, and a stranger key neither does."""

    target: Any
    jump: Any
    client_key: Path
    stranger_key: Path


@pytest.fixture(scope="session")
def sshbed(tmp_path_factory: pytest.TempPathFactory, podman: Any) -> Iterator[SSHBed]:
    from tests.realprograms import keygen, start_sshd, stop_sshd

    if not Path("/usr/sbin/sshd").exists() or shutil.which("ssh-keygen") is None:
        require("OpenSSH server (apt-get install openssh-server)")
    if shutil.which("docker") is None:
        require("the docker CLI, which the target's SSH sessions use against podman")
    root = tmp_path_factory.mktemp("ssh")
    keygen(root / "client_key")
    keygen(root / "stranger_key")
    pub = root / "client_key.pub"
    target = start_sshd(root / "target", pub, env={"DOCKER_HOST": podman.url})
    jump = start_sshd(
        root / "jump", pub, extra=f"PermitOpen 127.0.0.1:{target.port}", log_level="DEBUG1"
    )
    try:
        yield SSHBed(target, jump, root / "client_key", root / "stranger_key")
    finally:
        stop_sshd(target)
        stop_sshd(jump)
