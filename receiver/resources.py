"""Clients the actions share: Docker Engine API per host, pooled SSH connections, HTTP.

Created by the app as a cleanup context, handed to actions in ActionContext; nothing connects
until an action needs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shlex
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from receiver.alertmanager_api import AlertmanagerAPI
from receiver.inventory import Inventory
from receiver.prometheus_api import PrometheusAPI

if TYPE_CHECKING:
    import aiohttp
    from aiodocker import Docker

MAX_OUTPUT = 65_536


class DockerClients:
    """One aiodocker client per inventory host with a Docker endpoint."""

    def __init__(self, inventory: Inventory) -> None:
        self._inventory = inventory
        self._clients: dict[str, Docker] = {}

    def has_api(self, host: str) -> bool:
        return self._inventory.host(host).docker is not None

    def get(self, host: str) -> Docker:
        client = self._clients.get(host)
        if client is None:
            from aiodocker import Docker

            endpoint = self._inventory.host(host).docker
            if endpoint is None:
                raise LookupError(f"host {host!r} has no Docker endpoint")
            context = None
            url = endpoint.url
            if endpoint.tls_ca is not None:
                # Server verified against our CA, and we present a client certificate.
                context = ssl.create_default_context(cafile=str(endpoint.tls_ca))
                context.load_cert_chain(str(endpoint.tls_cert), str(endpoint.tls_key))
                # aiodocker switches tcp:// to https:// only for contexts it builds itself.
                url = re.sub(r"^(tcp|http)://", "https://", url)
            client = Docker(url=url, ssl_context=context)
            self._clients[host] = client
        return client

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()
        self._clients.clear()


@dataclass(frozen=True, slots=True)
class CommandResult:
    command: str
    exit_status: int | None
    output: str


class SSHPool:
    """Key-only SSH, host keys checked, one kept-open connection per host (jump hosts too)."""

    def __init__(self, inventory: Inventory, connect_timeout: float = 10) -> None:
        self._inventory = inventory
        self._connect_timeout = connect_timeout
        self._conns: dict[str, Any] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def _connection(self, host: str) -> Any:
        import asyncssh

        lock = self._locks.setdefault(host, asyncio.Lock())
        async with lock:
            conn = self._conns.get(host)
            if conn is not None and not conn.is_closed():
                return conn
            endpoint = self._inventory.host(host).ssh
            if endpoint is None:
                raise LookupError(f"host {host!r} has no SSH endpoint")
            tunnel = await self._connection(endpoint.jump) if endpoint.jump else ()
            conn = await asyncssh.connect(
                endpoint.host,
                endpoint.port,
                tunnel=tunnel,
                username=endpoint.user,
                client_keys=[str(endpoint.key_file)],
                known_hosts=str(endpoint.known_hosts),  # never auto-accepted
                agent_path=None,
                password=None,
                kbdint_auth=False,
                config=None,
                connect_timeout=self._connect_timeout,
            )
            self._conns[host] = conn
            return conn

    async def run(self, host: str, argv: Sequence[str], within: float) -> CommandResult:
        """Run an argv (already checked against the allow-list) and capture its output."""
        command = shlex.join(argv)
        conn = await self._connection(host)
        try:
            result = await asyncio.wait_for(conn.run(command, check=False), within)
        except (ConnectionError, OSError):
            # A pooled connection that went stale: drop it so the retry reconnects.
            self._conns.pop(host, None)
            raise
        output = _text(result.stdout) + _text(result.stderr)
        return CommandResult(command, result.exit_status, output[-MAX_OUTPUT:])

    async def close(self) -> None:
        for conn in self._conns.values():
            conn.close()
        for conn in self._conns.values():
            with contextlib.suppress(Exception):
                await conn.wait_closed()
        self._conns.clear()


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


@dataclass(frozen=True, slots=True)
class Resources:
    inventory: Inventory
    docker: DockerClients
    ssh: SSHPool
    http: aiohttp.ClientSession | None = None
    http_allow: tuple[str, ...] = ()
    # Alertmanager's API, read (blocking alerts, re-check, verify, truncated groups).
    alertmanager: AlertmanagerAPI | None = None
    prometheus: PrometheusAPI | None = None  # fleet sizes (blast radius)
