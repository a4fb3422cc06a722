"""Evidence before acting: what a target looked like just before autoheal changed it.

A restart wipes what people need to find the cause: the exit code, OOMKilled, the error, the
health checks that failed, the last log lines. Before an action that names a container (or an
SSH host) runs, the container's State from the Engine API and the tail of its logs, and the
output of the host's allow-listed diagnostic command, are captured for the heal log.

Bounded (lines, bytes, a timeout of its own), redacted (secret patterns and autoheal's own
secrets), and never in the repair's way: a capture that fails or is slow is recorded as such
and the action runs anyway.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from receiver.actions.base import Subject
from receiver.errors import SlotError
from receiver.logs import REDACTED, Redactor

if TYPE_CHECKING:
    from receiver.config import Settings
    from receiver.resources import Resources

log = logging.getLogger(__name__)

# Values that look like credentials. A pattern with a group redacts the group (the key stays
# readable: "password=[REDACTED]"), one without redacts the whole match. A setting replaces
# the list (README, Evidence before acting).
DEFAULT_REDACT: tuple[str, ...] = (
    # key=value and key: value, for keys that name a secret (DB_PASSWORD=, "api_key": ...)
    r"(?i)[\w.-]*(?:passw(?:or)?d|pwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key"
    r"|credentials?|auth)[\w.-]*[\"']?\s*[:=]\s*[\"']?([^\s\"',;&]+)",
    # Authorization headers and bare bearer/basic credentials
    r"(?i)\b(?:bearer|basic)\s+([A-Za-z0-9._~+/=-]{8,})",
    # user:password@ in URLs (postgres://app:hunter2@db/app)
    r"(?i)\b[a-z][a-z0-9+.-]*://[^/\s:@]+:([^/\s@]+)@",
    # JSON Web Tokens, AWS access key ids, GitHub and Slack tokens
    r"\beyJ[\w-]{5,}\.[\w-]{5,}\.[\w-]{5,}",
    r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",
    r"\bgh[pousr]_[A-Za-z0-9]{30,}\b",
    r"\bxox[abprs]-[A-Za-z0-9-]{10,}",
    # PEM private keys, whole (or to the end of what was captured)
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|\Z)",
)

HEALTH_RUNS = 5  # the last health checks kept, each output cut to:
HEALTH_OUTPUT = 1024
SUMMARY_LOG_LINE = 160


def compile_patterns(patterns: Sequence[str], where: str) -> tuple[re.Pattern[str], ...]:
    """Each pattern compiled; ValueError naming the one that does not compile."""
    compiled = []
    for i, pattern in enumerate(patterns):
        try:
            compiled.append(re.compile(pattern))
        except re.error as exc:
            raise ValueError(f"{where}[{i}]: {pattern!r} does not compile: {exc}") from exc
    return tuple(compiled)


class Redaction:
    """Redacts autoheal's own secrets by value and whatever matches the patterns."""

    def __init__(self, patterns: Iterable[re.Pattern[str]], secrets: Iterable[str] = ()) -> None:
        self._patterns = tuple(patterns)
        self._secrets = Redactor(secrets)

    def __call__(self, text: str) -> str:
        text = self._secrets(text)
        for pattern in self._patterns:
            text = pattern.sub(_redact_match, text)
        return text


def _redact_match(found: re.Match[str]) -> str:
    if found.re.groups == 0 or found.start(1) < 0:
        return REDACTED
    whole, base = found.group(0), found.start(0)
    return whole[: found.start(1) - base] + REDACTED + whole[found.end(1) - base :]


@dataclass(frozen=True, slots=True)
class EvidencePolicy:
    """How much is captured, within how long, and what is redacted."""

    enabled: bool = True
    log_lines: int = 200
    log_bytes: int = 65_536
    timeout: float = 5.0
    redact: Redaction = field(default_factory=lambda: Redaction(()))

    @classmethod
    def from_settings(cls, settings: Settings) -> EvidencePolicy:
        return cls(
            enabled=settings.evidence,
            log_lines=settings.evidence_log_lines,
            log_bytes=settings.evidence_log_bytes,
            timeout=settings.evidence_timeout_seconds,
            redact=Redaction(settings.evidence_patterns, settings.secrets()),
        )


def tail(text: str, lines: int, max_bytes: int) -> tuple[str, bool]:
    """The last ``lines`` lines of ``text`` within ``max_bytes`` (UTF-8), cut at a line start
    where one is in reach; and whether anything was cut."""
    kept = text.splitlines(keepends=True)
    cut = len(kept) > lines
    kept = kept[-lines:] if lines > 0 else []
    body = "".join(kept)
    raw = body.encode()
    if len(raw) <= max_bytes:
        return body, cut
    raw = raw[len(raw) - max_bytes :]
    newline = raw.find(b"\n")
    if 0 <= newline < len(raw) - 1:
        raw = raw[newline + 1 :]
    return raw.decode(errors="ignore"), True


async def capture(
    subject: Subject, resources: Resources | None, policy: EvidencePolicy
) -> dict[str, Any] | None:
    """What ``subject`` looks like now, as JSON for the heal log; None when there is nothing
    to look at (capture off, no clients, a host with neither API nor diagnostic)."""
    if not policy.enabled or resources is None:
        return None
    try:
        host = resources.inventory.host(subject.host)
    except SlotError:
        return None  # the action refuses the host itself; nothing to look at
    api = host.docker is not None and subject.container is not None
    if not api and (host.diagnostic is None or host.ssh is None):
        return None
    found: dict[str, Any] = {
        "host": subject.host,
        "captured_at": datetime.now(UTC).isoformat(),
    }
    errors: list[str] = []
    started = time.perf_counter()
    try:
        # Parts fill ``found`` as they go: a timeout keeps what was captured before it.
        async with asyncio.timeout(policy.timeout):
            if api:
                assert subject.container is not None
                await _container(found, errors, resources, subject.host, subject.container, policy)
            if host.diagnostic is not None and host.ssh is not None:
                await _diagnostic(found, errors, resources, subject, host.diagnostic, policy)
    except TimeoutError:
        errors.append(f"capture stopped after {policy.timeout:g}s (evidence_timeout_seconds)")
    found["seconds"] = round(time.perf_counter() - started, 3)
    if errors:
        found["errors"] = errors
    return found


async def _container(
    found: dict[str, Any],
    errors: list[str],
    resources: Resources,
    host: str,
    name: str,
    policy: EvidencePolicy,
) -> None:
    from aiodocker.exceptions import DockerError

    redact = policy.redact
    try:
        container = await resources.docker.get(host).containers.get(name)
    except DockerError as exc:
        errors.append(f"inspect {name}: {exc.message}")
        return
    except (OSError, ValueError, LookupError) as exc:
        errors.append(f"inspect {name}: {type(exc).__name__}: {exc}")
        return
    state = container["State"] or {}
    health = state.get("Health") or {}
    entry: dict[str, Any] = {
        "name": name,
        "id": str(container["Id"])[:12],
        "status": state.get("Status"),
        "running": state.get("Running"),
        "restarting": state.get("Restarting"),
        "exit_code": state.get("ExitCode"),
        "oom_killed": state.get("OOMKilled"),
        "error": redact(str(state.get("Error") or "")),
        "restart_count": _field(container, "RestartCount"),
        "started_at": state.get("StartedAt"),
        "finished_at": state.get("FinishedAt"),
    }
    if health.get("Status"):
        entry["health"] = {
            "status": health.get("Status"),
            "failing_streak": health.get("FailingStreak"),
            "log": [
                {
                    "start": run.get("Start"),
                    "exit_code": run.get("ExitCode"),
                    "output": redact(str(run.get("Output") or ""))[-HEALTH_OUTPUT:],
                }
                for run in (health.get("Log") or [])[-HEALTH_RUNS:]
            ],
        }
    found["container"] = entry
    if policy.log_lines <= 0 or policy.log_bytes <= 0:
        return
    try:
        # One line more than kept: whether there was more to say.
        pieces = await container.log(
            stdout=True, stderr=True, tail=policy.log_lines + 1, timestamps=True
        )
    except DockerError as exc:
        errors.append(f"logs {name}: {exc.message}")
        return
    except (OSError, ValueError) as exc:
        errors.append(f"logs {name}: {type(exc).__name__}: {exc}")
        return
    # Redacted whole, then cut: a cut could split a secret from the key that names it.
    text, truncated = tail(redact("".join(pieces)), policy.log_lines, policy.log_bytes)
    found["logs"] = {"text": text, "lines": text.count("\n"), "truncated": truncated}


async def _diagnostic(
    found: dict[str, Any],
    errors: list[str],
    resources: Resources,
    subject: Subject,
    command: str,
    policy: EvidencePolicy,
) -> None:
    import asyncssh

    template = resources.inventory.commands[command]
    values = {}
    if "container" in template.slots:
        if subject.container is None:
            errors.append(f"diagnostic {command}: needs a container and the action names none")
            return
        values["container"] = subject.container
    try:
        argv = template.render(values)
    except SlotError as exc:
        errors.append(f"diagnostic {command}: refused: {exc}")
        return
    try:
        result = await resources.ssh.run(subject.host, argv, policy.timeout)
    except (asyncssh.Error, OSError, LookupError) as exc:
        errors.append(f"diagnostic {command}: ssh failed: {type(exc).__name__}: {exc}")
        return
    output, truncated = tail(policy.redact(result.output), policy.log_lines, policy.log_bytes)
    found["diagnostic"] = {
        "command": result.command,
        "exit_status": result.exit_status,
        "output": output,
        "truncated": truncated,
    }


def summary(evidence: Mapping[str, Any] | None) -> str | None:
    """One line for a message: the container's state and its last log line, or the
    diagnostic's exit status; None when nothing was captured."""
    if not evidence:
        return None
    parts = []
    entry = evidence.get("container")
    if entry:
        said = [f"exit code {entry.get('exit_code')}"]
        if entry.get("oom_killed"):
            said.append("OOM-killed")
        if entry.get("error"):
            said.append(f"error: {str(entry['error'])[:120]}")
        line = f"{evidence.get('host')}/{entry.get('name')} was {entry.get('status')} ("
        line += ", ".join(said) + ")"
        if entry.get("restart_count"):
            line += f", restarted {entry['restart_count']} times"
        health = entry.get("health")
        if health and health.get("status"):
            line += f", health {health['status']}"
        parts.append(line)
        last = _last_line((evidence.get("logs") or {}).get("text", ""))
        if last:
            parts.append(f"last log: {last}")
    diagnostic = evidence.get("diagnostic")
    if diagnostic:
        parts.append(f"diagnostic {diagnostic.get('command')} exit {diagnostic.get('exit_status')}")
    if evidence.get("errors"):
        parts.append(f"capture: {evidence['errors'][0]}")
    return "; ".join(parts) or None


def _field(container: Any, key: str) -> Any:
    """A top-level field of the inspect answer, None when this engine leaves it out."""
    try:
        return container[key]
    except KeyError:
        return None


def _last_line(text: str) -> str:
    for line in reversed(text.splitlines()):
        if line.strip():
            return line.strip()[:SUMMARY_LOG_LINE]
    return ""
