"""Hosts autoheal may act on, and the commands it may run on them over SSH.

Both come from the config file and are validated at start: a playbook that names an unknown
host or a command outside the allow-list fails ``autoheal check``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from receiver.errors import SlotError
from receiver.slots import HOST_NAME, SLOT_PATTERNS, check_slot

_SLOT = re.compile(r"\{([a-z_]+)\}")

# The seed's allow-list: restart or start a container, restart a compose service.
DEFAULT_COMMANDS: dict[str, list[str]] = {
    "docker_restart": ["docker", "restart", "{container}"],
    "docker_start": ["docker", "start", "{container}"],
    "compose_restart": ["docker", "compose", "-f", "{file}", "restart", "{service}"],
    "compose_v1_restart": ["docker-compose", "-f", "{file}", "restart", "{service}"],
}


class DockerEndpoint(BaseModel):
    """A Docker Engine API: ``unix:///path.sock`` or ``tcp://host:2376`` with client certs."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    url: str
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None

    @model_validator(mode="after")
    def _check(self) -> DockerEndpoint:
        if not self.url.startswith(("unix://", "tcp://", "http://", "https://")):
            raise ValueError("docker url must be unix://, tcp://, http:// or https://")
        tls = (self.tls_ca, self.tls_cert, self.tls_key)
        if any(tls) and not all(tls):
            raise ValueError("TLS needs tls_ca, tls_cert and tls_key together")
        return self


class SSHEndpoint(BaseModel):
    """Key-only SSH with host keys checked against known_hosts; optional jump host."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    host: str
    port: int = Field(default=22, ge=1, le=65535)
    user: str
    key_file: Path
    known_hosts: Path
    jump: str | None = None  # another inventory host, reached first


class HostConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    docker: DockerEndpoint | None = None
    ssh: SSHEndpoint | None = None
    # An allow-listed command run over SSH before autoheal acts on this host, its output kept
    # as evidence in the heal log (e.g. recent logs, disk and memory); {container} is the
    # action's container, when it names one.
    diagnostic: str | None = None


class CommandTemplate(BaseModel):
    """An argv template: literal words and whole ``{slot}`` words, nothing else."""

    model_config = ConfigDict(frozen=True)
    argv: tuple[str, ...]

    @field_validator("argv")
    @classmethod
    def _check(cls, argv: tuple[str, ...]) -> tuple[str, ...]:
        if not argv or _SLOT.fullmatch(argv[0]):
            raise ValueError("the program (first word) must be literal")
        for word in argv:
            slot = _SLOT.fullmatch(word)
            if slot is not None:
                if slot[1] not in SLOT_PATTERNS:
                    raise ValueError(f"unknown slot {word}; known: {sorted(SLOT_PATTERNS)}")
            elif "{" in word or "}" in word:
                raise ValueError(f"{word!r}: a slot must be a whole word like {{container}}")
        return argv

    @property
    def slots(self) -> set[str]:
        return {m[1] for w in self.argv if (m := _SLOT.fullmatch(w))}

    def render(self, values: Mapping[str, str]) -> list[str]:
        """The argv with slots filled; every value checked against its slot's pattern."""
        missing = self.slots - set(values)
        if missing:
            raise SlotError(sorted(missing)[0], "", "no value given")
        extra = set(values) - self.slots
        if extra:
            raise SlotError(sorted(extra)[0], "", "not a slot of this command")
        argv = []
        for word in self.argv:
            slot = _SLOT.fullmatch(word)
            if slot is None:
                argv.append(word)
                continue
            value = values[slot[1]]
            reason = check_slot(slot[1], value)
            if reason is not None:
                raise SlotError(slot[1], value, reason)
            argv.append(value)
        return argv


@dataclass(frozen=True, slots=True)
class Inventory:
    hosts: Mapping[str, HostConfig]
    commands: Mapping[str, CommandTemplate]

    def host(self, name: str) -> HostConfig:
        """The named host; SlotError (refused, nothing opened) when it is not in the inventory."""
        if HOST_NAME.fullmatch(name) is None:
            raise SlotError("host", name, f"must match {HOST_NAME.pattern}")
        found = self.hosts.get(name)
        if found is None:
            raise SlotError("host", name, "not in the host inventory")
        return found


def build_inventory(
    hosts: Mapping[str, HostConfig],
    commands: Mapping[str, Sequence[str]],
    local_docker_url: str | None,
) -> Inventory:
    """Validate names and jump references; add the ``local`` host unless configured."""
    merged = dict(hosts)
    if "local" not in merged and local_docker_url:
        merged["local"] = HostConfig(docker=DockerEndpoint(url=local_docker_url))
    for name, host in merged.items():
        if HOST_NAME.fullmatch(name) is None:
            raise ValueError(f"hosts: {name!r} is not a valid host name")
        if host.docker is None and host.ssh is None:
            raise ValueError(f"hosts.{name}: needs docker and/or ssh")
        if host.ssh is not None and host.ssh.jump is not None:
            jump = merged.get(host.ssh.jump)
            if jump is None or jump.ssh is None:
                raise ValueError(f"hosts.{name}.ssh.jump: {host.ssh.jump!r} is not an SSH host")
            if jump.ssh.jump is not None:
                raise ValueError(f"hosts.{name}.ssh.jump: one jump only")
    templates = {}
    for name, argv in commands.items():
        try:
            templates[name] = CommandTemplate(argv=tuple(argv))
        except ValueError as exc:
            raise ValueError(f"commands.{name}: {exc}") from exc
    for name, host in merged.items():
        if host.diagnostic is None:
            continue
        where = f"hosts.{name}.diagnostic"
        if host.ssh is None:
            raise ValueError(f"{where}: needs ssh (the diagnostic runs over SSH)")
        template = templates.get(host.diagnostic)
        if template is None:
            raise ValueError(f"{where}: {host.diagnostic!r} is not in the allow-list (commands)")
        if not template.slots <= {"container"}:
            raise ValueError(
                f"{where}: may use only the container slot, not {sorted(template.slots)}"
            )
    return Inventory(merged, templates)
