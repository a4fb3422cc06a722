"""Real programs the tests drive: podman's Docker-compatible API, OpenSSH's sshd,
Prometheus and Alertmanager.

Recipes from shared/TESTBED.md. Everything binds to 127.0.0.1 or a unix socket under a
temporary directory, and every process started here is stopped by its fixture.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

IMAGE = "localhost/testbox:latest"
APPLETS = (
    *("sh", "sleep", "touch", "test", "cat", "echo", "rm", "ls", "true", "false", "mkdir"),
    "httpd",  # a scrape target inside a container (host network), for the chain tests
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def spawn(
    argv: list[str], log: Path, port: int, what: str, within: float = 15
) -> subprocess.Popen[bytes]:
    """Start a server with its output in ``log``; return once it accepts on ``port``."""
    with log.open("wb") as out:  # the child keeps its own descriptor
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    wait_for(lambda: listening(port), within, what)
    return process


def wait_for(check: Any, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise TimeoutError(f"{what} not ready after {within}s")


@dataclass
class Podman:
    """A podman service on a unix socket, its storage under ``root``."""

    root: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    names: set[str] = field(default_factory=set)

    @property
    def socket(self) -> Path:
        return self.root / "podman.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def podman(self, *args: str, check: bool = True) -> str:
        result = subprocess.run(
            ["podman", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"podman {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout.strip()

    def inspect(self, name: str) -> dict[str, Any]:
        data: list[dict[str, Any]] = json.loads(self.podman("inspect", name))
        return data[0]

    def started_at(self, name: str) -> str:
        return str(self.inspect(name)["State"]["StartedAt"])

    def running(self, name: str) -> bool:
        return bool(self.inspect(name)["State"]["Running"])

    def container(
        self,
        name: str,
        *,
        health_cmd: str | None = None,
        start: bool = True,
        command: str = "trap 'exit 0' TERM; sleep 3600 & wait",
    ) -> None:
        """A fresh container named ``name`` (replacing any old one), running unless told not;
        ``command`` is its shell script."""
        self.podman("rm", "-f", "-t", "0", name, check=False)
        args = ["create", "--name", name]
        if health_cmd is not None:
            args += ["--health-cmd", health_cmd, "--health-interval", "1s", "--health-retries", "1"]
        # By default a PID 1 that exits on SIGTERM, as a real service does (bare sleep
        # ignores it and every restart would wait out the stop timeout).
        self.podman(*args, IMAGE, "/bin/sh", "-c", command)
        self.names.add(name)
        if start:
            self.podman("start", name)

    def healthcheck(self, name: str) -> None:
        """What systemd's timer would do: run the container's healthcheck once."""
        self.podman("healthcheck", "run", name, check=False)

    def stop(self, name: str) -> None:
        self.podman("stop", "-t", "0", name)


def start_podman(root: Path) -> Podman:
    root.mkdir(parents=True, exist_ok=True)
    (root / "containers.conf").write_text(
        "[containers]\n"
        'netns="none"\n'
        'default_ulimits=["nofile=1024:1024","nproc=1024:1024"]\n'
        "[engine]\n"
        'runtime="runc"\n'
        'cgroup_manager="cgroupfs"\n'
        'events_logger="file"\n'
        f'events_logfile_path="{root}/events.log"\n'
        f'tmp_dir="{root}/tmp"\n'
        f'volume_path="{root}/root/volumes"\n'
        "[network]\n"
        f'network_config_dir="{root}/net"\n'
    )
    (root / "storage.conf").write_text(
        f'[storage]\ndriver="overlay"\nrunroot="{root}/run"\ngraphroot="{root}/root"\n'
    )
    (root / "registries.conf").write_text("unqualified-search-registries = []\n")
    env = {
        **os.environ,
        "CONTAINERS_CONF": str(root / "containers.conf"),
        "CONTAINERS_STORAGE_CONF": str(root / "storage.conf"),
        "CONTAINERS_REGISTRIES_CONF": str(root / "registries.conf"),
    }
    engine = Podman(root, env)
    rootfs = root / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    (rootfs / "tmp").mkdir()
    shutil.copy(shutil.which("busybox") or "/bin/busybox", rootfs / "bin" / "busybox")
    for applet in APPLETS:
        (rootfs / "bin" / applet).symlink_to("busybox")
    subprocess.run(["tar", "-C", str(rootfs), "-cf", str(root / "rootfs.tar"), "."], check=True)
    engine.podman(
        "import", "--change", 'CMD ["/bin/sleep","3600"]', str(root / "rootfs.tar"), IMAGE
    )
    with (root / "service.log").open("wb") as log:  # the child keeps its own descriptor
        engine.process = subprocess.Popen(
            ["podman", "system", "service", "--time=0", engine.url],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    wait_for(engine.socket.exists, 20, "podman socket")
    return engine


def stop_podman(engine: Podman) -> None:
    with contextlib.suppress(Exception):
        engine.podman("rm", "-a", "-f", "-t", "0", check=False)
    if engine.process is not None:
        stop_process(engine.process)
    with contextlib.suppress(Exception):
        engine.podman("system", "reset", "-f", check=False)
    shutil.rmtree(engine.root, ignore_errors=True)


@dataclass
class SSHServer:
    """A real OpenSSH server on 127.0.0.1 with throwaway keys."""

    root: Path
    port: int
    client_key: Path
    known_hosts: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> str:
        return (self.root / "sshd.log").read_text(errors="replace")


def keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "autoheal-test", "-f", str(path)],
        check=True,
        timeout=30,
    )


def start_sshd(
    root: Path,
    client_pub: Path,
    *,
    env: dict[str, str] | None = None,
    extra: str = "",
    log_level: str = "VERBOSE",
) -> SSHServer:
    """sshd -D on a free loopback port, accepting only ``client_pub``; env for sessions."""
    root.mkdir(parents=True, exist_ok=True)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    keygen(root / "host_key")
    port = free_port()
    (root / "authorized_keys").write_text(client_pub.read_text())
    lines = [
        f"Port {port}",
        "ListenAddress 127.0.0.1",
        f"HostKey {root / 'host_key'}",
        f"PidFile {root / 'sshd.pid'}",
        f"AuthorizedKeysFile {root / 'authorized_keys'}",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "PermitRootLogin prohibit-password",
        "StrictModes no",
        f"LogLevel {log_level}",  # DEBUG also reaches sessions' stderr
        *(f"SetEnv {k}={v}" for k, v in (env or {}).items()),
        extra,
    ]
    (root / "sshd_config").write_text("\n".join(lines) + "\n")
    host_pub = (root / "host_key.pub").read_text().split()
    known = root / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    process = spawn(
        ["/usr/sbin/sshd", "-D", "-e", "-f", str(root / "sshd_config")],
        root / "sshd.log",
        port,
        "sshd",
    )
    return SSHServer(root, port, client_pub.with_suffix(""), known, process)


def stop_sshd(server: SSHServer) -> None:
    if server.process is not None:
        stop_process(server.process)


def make_certs(root: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, with openssl."""
    root.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    run(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        str(root / "ca.key"),
        "-out",
        str(root / "ca.pem"),
        "-days",
        "2",
        "-subj",
        "/CN=autoheal test CA",
    )
    for name, extra in (
        ("server", "subjectAltName=IP:127.0.0.1"),
        ("client", "extendedKeyUsage=clientAuth"),
    ):
        run(
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(root / f"{name}.key"),
            "-out",
            str(root / f"{name}.csr"),
            "-subj",
            f"/CN={name}",
        )
        (root / f"{name}.ext").write_text(extra + "\n")
        run(
            "x509",
            "-req",
            "-in",
            str(root / f"{name}.csr"),
            "-CA",
            str(root / "ca.pem"),
            "-CAkey",
            str(root / "ca.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            str(root / f"{name}.ext"),
            "-out",
            str(root / f"{name}.pem"),
        )
    return {
        k: root / v
        for k, v in {
            "ca": "ca.pem",
            "server_cert": "server.pem",
            "server_key": "server.key",
            "client_cert": "client.pem",
            "client_key": "client.key",
        }.items()
    }


@dataclass
class Server:
    """A server process on 127.0.0.1 with its state under ``root``."""

    root: Path
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


Alertmanager = Prometheus = Server


def alertmanager_config(webhook_url: str, token_file: Path) -> str:
    """A config routing everything to one webhook, with the fast test timings."""
    return (
        "route:\n"
        "  receiver: autoheal\n"
        "  group_by: [alertname, container]\n"
        "  group_wait: 0s\n"
        "  group_interval: 1s\n"
        "  repeat_interval: 1h\n"
        "receivers:\n"
        "  - name: autoheal\n"
        "    webhook_configs:\n"
        f"      - url: {webhook_url}\n"
        "        send_resolved: true\n"
        "        http_config:\n"
        f"          authorization: {{type: Bearer, credentials_file: {token_file}}}\n"
    )


def start_alertmanager(
    root: Path, webhook_url: str, token: str, config: str | None = None, port: int | None = None
) -> Alertmanager:
    """prometheus-alertmanager on loopback, no gossip. ``config`` may name ``{token_file}``;
    without one, everything routes to ``webhook_url``."""
    root.mkdir(parents=True, exist_ok=True)
    token_file = root / "token"
    token_file.write_text(token)
    text = alertmanager_config(webhook_url, token_file) if config is None else config
    (root / "am.yml").write_text(text.replace("{token_file}", str(token_file)))
    port = port or free_port()
    process = spawn(
        [
            "prometheus-alertmanager",
            f"--config.file={root / 'am.yml'}",
            f"--storage.path={root / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",  # no gossip port on all interfaces
            f"--web.external-url=http://127.0.0.1:{port}",
        ],
        root / "am.log",
        port,
        "alertmanager",
    )
    return Alertmanager(root, port, process)


def start_prometheus(root: Path, config: dict[str, Any], rules: dict[str, str]) -> Prometheus:
    """Prometheus on loopback with ``config`` (a dict, dumped as YAML) and rule files by name
    (written beside it and listed in rule_files). Ready when /-/ready answers."""
    import urllib.request

    import yaml

    root.mkdir(parents=True, exist_ok=True)
    for name, text in rules.items():
        (root / name).write_text(text)
    config = {**config, "rule_files": [str(root / name) for name in rules]}
    (root / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    process = spawn(
        [
            "prometheus",
            f"--config.file={root / 'prometheus.yml'}",
            f"--storage.tsdb.path={root / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle",
        ],
        root / "prometheus.log",
        port,
        "prometheus",
    )

    def ready() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=1) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    wait_for(ready, 20, "prometheus ready")
    return Prometheus(root, port, process)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
