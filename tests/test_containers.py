"""Container actions against a real engine: podman's Docker-compatible API, real containers."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import pytest

from tests.conftest import load_fixture, oom_alert, playbook_yaml


def playbook(action: str, params: str, **fields: Any) -> str:
    return playbook_yaml(
        action, params, name="containers", **{"cooldown_minutes": 0, "verify_seconds": 60, **fields}
    )


def alert(make_alert: Any, fp: str = "fp", **labels: str) -> Any:
    return oom_alert(make_alert, fp, **labels)


@pytest.fixture
def containers(podman: Any) -> Any:
    for name in ("momo-db", "momo-pro-system", "momo-scheduler", "app"):
        podman.container(name)
    return podman


async def test_restart_through_the_engine_api(
    containers: Any, make_service: Any, playbooks_dir: Any, make_alert: Any
) -> None:
    svc = await make_service(
        docker_url=containers.url,
        playbooks=playbooks_dir(
            playbook("docker_restart", "{container: '${labels.container}', stop_timeout: 0}")
        ),
    )
    before = containers.started_at("app")
    await svc.post("/api/v1/alerts", alert(make_alert, container="app"))
    started = time.perf_counter()
    await svc.settle()
    elapsed = time.perf_counter() - started
    incident = await svc.only_incident()
    (log,) = incident["heal_logs"]
    assert log["result"] == "success", log
    assert containers.started_at("app") != before
    assert containers.running("app")
    assert log["action_detail"] == "docker restart -t 0 app on local"
    assert "StartedAt" in log["result_output"]
    assert incident["status"] == "verifying"
    print(f"\nrestart through the Docker API, alert to verified restart: {elapsed * 1000:.0f} ms")


async def test_start_a_stopped_container(
    containers: Any, make_service: Any, playbooks_dir: Any, make_alert: Any
) -> None:
    containers.stop("app")
    svc = await make_service(
        docker_url=containers.url,
        playbooks=playbooks_dir(playbook("docker_start", "{container: app}")),
    )
    await svc.post("/api/v1/alerts", alert(make_alert, container="app"))
    await svc.settle()
    (log,) = (await svc.only_incident())["heal_logs"]
    assert log["result"] == "success", log
    assert containers.running("app")


async def test_missing_container_fails_without_retry(
    containers: Any, make_service: Any, playbooks_dir: Any, make_alert: Any
) -> None:
    svc = await make_service(
        docker_url=containers.url,
        playbooks=playbooks_dir(
            playbook("docker_restart", "{container: '${labels.container}'}", max_retries=3)
        ),
    )
    await svc.post("/api/v1/alerts", alert(make_alert, container="no-such-box"))
    await svc.settle()
    incident = await svc.only_incident()
    (log,) = incident["heal_logs"]
    assert log["result"] == "failed"
    assert "no such container" in log["result_output"]
    assert incident["status"] == "escalated"
    assert incident["escalation_reason"] == "not_retryable"


@contextlib.asynccontextmanager
async def healthchecks(engine: Any, name: str) -> Any:
    """Run the container's healthcheck every 0.3 s, as systemd's timer would."""

    async def loop() -> None:
        while True:
            await asyncio.to_thread(engine.healthcheck, name)
            await asyncio.sleep(0.3)

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_waits_for_healthy(
    podman: Any, make_service: Any, playbooks_dir: Any, make_alert: Any
) -> None:
    podman.container("hc", health_cmd="test -e /bin/sh")
    svc = await make_service(
        docker_url=podman.url,
        playbooks=playbooks_dir(
            playbook("docker_restart", "{container: hc, stop_timeout: 0, healthy_timeout: 20}")
        ),
    )
    await svc.post("/api/v1/alerts", alert(make_alert, container="hc"))
    async with healthchecks(podman, "hc"):
        await svc.settle(30)
    (log,) = (await svc.only_incident())["heal_logs"]
    assert log["result"] == "success", log
    assert log["result_output"].endswith("healthy")


async def test_unhealthy_after_restart_is_a_failure(
    podman: Any, make_service: Any, playbooks_dir: Any, make_alert: Any
) -> None:
    podman.container("sick", health_cmd="test -e /nonexistent")
    svc = await make_service(
        docker_url=podman.url,
        playbooks=playbooks_dir(
            playbook(
                "docker_restart",
                "{container: sick, stop_timeout: 0, healthy_timeout: 2}",
                max_retries=1,
            )
        ),
    )
    await svc.post("/api/v1/alerts", alert(make_alert, container="sick"))
    async with healthchecks(podman, "sick"):
        await svc.settle(30)
    (log,) = (await svc.only_incident())["heal_logs"]
    assert log["result"] == "failed"
    assert "health" in log["result_output"]


SEED_SCENARIOS = [
    # (exception report, the one container it must restart)
    (
        {
            "task": "run_auto_import_task",
            "severity": "P2",
            "message": '(psycopg2.OperationalError) could not translate host name "momo-db" to address: '
            "Temporary failure in name resolution",
        },
        "momo-db",
    ),
    (
        {
            "task": "run_analysis_task",
            "severity": "P2",
            "message": 'connection to server at "10.0.0.5", port 5432 failed: Connection refused',
        },
        "momo-db",
    ),
    (
        {
            "task": "web",
            "severity": "P1",
            "labels": {"container": "momo-pro-system"},
            "message": "[ERROR] Worker (pid:1234) was sent SIGKILL! Perhaps out of memory?",
        },
        "momo-pro-system",
    ),
    (
        {
            "task": "run_weekly_strategy",
            "severity": "P1",
            "labels": {"container": "momo-scheduler"},
            "message": "MemoryError",
        },
        "momo-scheduler",
    ),
    (
        {
            "task": "run_analysis_task",
            "severity": "P2",
            "message": "psycopg2.OperationalError: SSL SYSCALL error: EOF detected",
        },
        "momo-pro-system",
    ),
]


@pytest.mark.parametrize(("report", "expected"), SEED_SCENARIOS)
async def test_seed_scenarios_restart_exactly_the_right_container(
    containers: Any, make_service: Any, report: dict[str, Any], expected: str
) -> None:
    svc = await make_service(docker_url=containers.url)  # the bundled seed playbooks
    names = ("momo-db", "momo-pro-system", "momo-scheduler")
    before = {n: containers.started_at(n) for n in names}
    resp = await svc.post("/api/v1/exceptions", report)
    assert resp.status == 202
    await svc.settle(30)
    incident = await svc.only_incident()
    (log,) = incident["heal_logs"]
    assert log["result"] == "success", log
    changed = {n for n in names if containers.started_at(n) != before[n]}
    assert changed == {expected}


async def test_alert_payload_from_prometheus_restarts_its_container(
    containers: Any, make_service: Any, playbooks_dir: Any
) -> None:
    svc = await make_service(
        docker_url=containers.url,
        playbooks=playbooks_dir(
            "playbooks:\n  - name: container down\n    error_type: UNKNOWN\n"
            "    matchers: ['alertname=\"ContainerDown\"', 'container=~\".+\"']\n"
            "    action: {type: docker_restart, params: {container: '${labels.container}', stop_timeout: 0}}\n"
        ),
    )
    before = containers.started_at("app")
    await svc.post("/api/v1/alerts", load_fixture("prom_firing.json"))
    await svc.settle()
    assert containers.started_at("app") != before
    await svc.post("/api/v1/alerts", load_fixture("prom_resolved.json"))
    assert (await svc.only_incident())["status"] == "resolved"


@pytest.mark.parametrize(
    "value", ["momo-db; rm -rf /", "$(id)", "`id`", "../../etc", "a" * 10_240, "momо-db"]
)
async def test_injection_never_reaches_the_engine(
    tmp_path: Any, make_service: Any, playbooks_dir: Any, make_alert: Any, value: str
) -> None:
    """The Docker endpoint is a socket that counts connections: a refused slot opens none."""
    connections = 0

    async def count(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        writer.close()

    path = tmp_path / "docker.sock"
    server = await asyncio.start_unix_server(count, path=str(path))
    try:
        svc = await make_service(
            docker_url=f"unix://{path}",
            playbooks=playbooks_dir(
                playbook("docker_restart", "{container: '${labels.container}'}")
            ),
        )
        await svc.post("/api/v1/alerts", alert(make_alert, container=value))
        await svc.settle()
        incident = await svc.only_incident()
        (log,) = incident["heal_logs"]
        assert log["result"] == "refused"
        assert incident["escalation_reason"] == "refused"
        assert connections == 0
        # Control: a name that fits does reach the socket, so the count above means something.
        await svc.post("/api/v1/alerts", alert(make_alert, fp="control", container="app"))
        await svc.settle()
        assert connections >= 1
    finally:
        server.close()
        await server.wait_closed()


@contextlib.asynccontextmanager
async def tls_front(engine: Any, certs: dict[str, Any]) -> Any:
    """A TLS endpoint that demands a client certificate, in front of podman's socket: what a
    Docker daemon with --tlsverify looks like from autoheal."""
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(certs["ca"]))
    context.load_cert_chain(str(certs["server_cert"]), str(certs["server_key"]))
    context.verify_mode = ssl.CERT_REQUIRED

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_unix_connection(str(engine.socket))
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"tcp://127.0.0.1:{port}"
    finally:
        server.close()


async def test_docker_api_over_tcp_with_tls_client_certificates(
    containers: Any, tmp_path: Any, make_service: Any, playbooks_dir: Any, make_alert: Any
) -> None:
    from tests.realprograms import make_certs

    certs = make_certs(tmp_path / "pki")
    async with tls_front(containers, certs) as url:
        tls = {
            "tls_ca": str(certs["ca"]),
            "tls_cert": str(certs["client_cert"]),
            "tls_key": str(certs["client_key"]),
        }
        svc = await make_service(
            hosts={"db1": {"docker": {"url": url, **tls}}},
            playbooks=playbooks_dir(
                playbook("docker_restart", "{host: db1, container: app, stop_timeout: 0}")
            ),
        )
        before = containers.started_at("app")
        await svc.post("/api/v1/alerts", alert(make_alert))
        await svc.settle(30)
        (log,) = (await svc.only_incident())["heal_logs"]
        assert log["result"] == "success", log
        assert containers.started_at("app") != before

        # A client certificate from another CA: the daemon ends the handshake.
        stranger = make_certs(tmp_path / "other-pki")
        wrong = {
            **tls,
            "tls_cert": str(stranger["client_cert"]),
            "tls_key": str(stranger["client_key"]),
        }
        other = await make_service(
            hosts={"db1": {"docker": {"url": url, **wrong}}},
            playbooks=playbooks_dir(
                playbook("docker_restart", "{host: db1, container: app}", max_retries=1)
            ),
        )
        await other.post("/api/v1/alerts", alert(make_alert, fp="second"))
        await other.settle(30)
        newest = (await other.incidents())[0]
        (log,) = (await other.incident(newest["id"]))["heal_logs"]
        assert log["result"] == "failed"
        assert "Docker API unreachable" in log["result_output"]
