"""``Settings``: every group of settings in one flat model, plus the store, the worker, the
hosts and the log; read from environment variables (prefix ``AUTOHEAL_``) over an optional
YAML file.

Built once by the entry point and passed down; nothing reads the environment later.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, SecretStr, field_validator, model_validator

from receiver.config.access import AccessSettings
from receiver.config.brakes import BrakeSettings
from receiver.config.notify import NotifySettings
from receiver.errors import ConfigError
from receiver.inventory import DEFAULT_COMMANDS, HostConfig, Inventory, build_inventory

PACKAGE_DIR = Path(__file__).resolve().parent.parent
ENV_PREFIX = "AUTOHEAL_"

# Secrets may live in files (Kubernetes/systemd credentials): (secret, its file) settings.
SECRET_FILES = (
    ("auth_token", "auth_token_file"),
    ("basic_auth", "basic_auth_file"),
    ("telegram_token", "telegram_token_file"),
    ("telegram_webhook_secret", "telegram_webhook_secret_file"),
    ("notify_webhook_token", "notify_webhook_token_file"),
    ("alertmanager_token", "alertmanager_token_file"),
)


def default_playbooks_dir() -> Path:
    """The playbooks shipped with the source tree, else ./playbooks."""
    bundled = PACKAGE_DIR.parent / "playbooks"
    return bundled if bundled.is_dir() else Path("playbooks")


def _url_password(url: str) -> str | None:
    """The password in a database URL, if it has one."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).password
    except ArgumentError:
        return None


class Settings(AccessSettings, NotifySettings, BrakeSettings):
    """Every knob of the service. See README.md, section Settings."""

    database_url: str = "sqlite+aiosqlite:///autoheal.db"
    playbooks: Path = Field(default_factory=default_playbooks_dir)
    dry_run: bool = False
    # The Docker Engine API of host "local" (unless hosts: names a "local" of its own).
    docker_url: str | None = "unix:///var/run/docker.sock"
    # Host inventory and the SSH command allow-list (config file; see README, Hosts).
    hosts: dict[str, HostConfig] = Field(default_factory=dict)
    commands: dict[str, list[str]] = Field(default_factory=lambda: dict(DEFAULT_COMMANDS))
    # Base URLs the http action may call (a URL must start with one of them).
    http_allow: list[str] = Field(default_factory=list)
    # false: this replica only ingests and serves reads (the others heal).
    worker: bool = True
    worker_concurrency: int = Field(default=4, ge=1, le=256)
    worker_poll_seconds: float = Field(default=1.0, gt=0)
    # Renewed every third of it while an action runs, so an action may outlast it; below
    # 0.3 s a renewal could not be relied on to reach the store in time.
    lease_seconds: float = Field(default=120.0, ge=0.3)
    action_timeout_seconds: float = Field(default=60.0, gt=0)
    # At most this many actions start per window, across all replicas (0: no budget); the
    # rest are escalated with reason "budget".
    action_budget: int = Field(default=0, ge=0)
    action_budget_window_seconds: float = Field(default=60.0, gt=0, le=86_400)
    # History kept, in days (0: forever); pruned in the background every interval.
    retention_signals_days: float = Field(default=7, ge=0)
    retention_outbox_days: float = Field(default=7, ge=0)
    retention_incidents_days: float = Field(default=90, ge=0)  # ended ones, with heal logs
    retention_task_runs_days: float = Field(default=30, ge=0)  # a task's latest run stays
    retention_interval_seconds: float = Field(default=3600, gt=0)
    retry_backoff_seconds: float = Field(default=30.0, ge=0)
    default_verify_seconds: float = Field(default=300.0, ge=0)
    ingest_max_batch: int = Field(default=512, ge=1)
    replica_id: str | None = None
    log_level: str = "INFO"
    log_format: str = "text"  # text, logfmt or json (one line per record, secrets redacted)
    # How often a worker replica looks for declared tasks' missed and overrunning runs.
    task_watch_seconds: float = Field(default=5.0, gt=0, le=3600)

    @field_validator("log_level")
    @classmethod
    def _check_level(cls, value: str) -> str:
        if value.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
        return value.upper()

    @field_validator("log_format")
    @classmethod
    def _check_format(cls, value: str) -> str:
        if value.lower() not in {"text", "logfmt", "json"}:
            raise ValueError("must be text, logfmt or json")
        return value.lower()

    @model_validator(mode="after")
    def _build(self) -> Settings:
        """The checks across fields, in order: secrets from their files first (the groups'
        checks read them), then each group's, then what spans groups."""
        self._read_secret_files()
        self._check_access()
        self._check_notify()
        if self.blocked_by and not self.alertmanager_urls:
            raise ValueError("blocked_by needs alertmanager_url (the alerts are asked there)")
        self._compile_brakes()
        self._keep("_inventory", build_inventory(self.hosts, self.commands, self.docker_url))
        return self

    def _read_secret_files(self) -> None:
        for attr, file_attr in SECRET_FILES:
            path = getattr(self, file_attr)
            if path is not None and getattr(self, attr) is None:
                try:
                    secret = path.read_text(encoding="utf-8").strip()
                except OSError as exc:
                    raise ValueError(f"{file_attr}: cannot read {path}: {exc.strerror}") from exc
                self._keep(attr, SecretStr(secret))

    def secrets(self) -> list[str]:
        """Every configured secret as it could appear in a log line (redacted there)."""
        values = [
            secret.get_secret_value()
            for secret in (getattr(self, attr) for attr, _ in SECRET_FILES)
            if secret is not None
        ]
        if self.basic_auth is not None:
            pair = self.basic_auth.get_secret_value()
            values.append(base64.b64encode(pair.encode()).decode())  # as the header carries it
            values.append(pair.partition(":")[2])
        password = _url_password(self.database_url)
        if password:
            values.append(password)
        return values

    def param_scope(self) -> dict[str, Any]:
        """What playbooks are validated against: known hosts, commands, base URLs (action
        parameters) and time intervals (brakes)."""
        return {
            "inventory": self.inventory,
            "http_allow": tuple(self.http_allow),
            "windows": self.windows,
            "alertmanager": bool(self.alertmanager_urls),
            "prometheus": bool(self.prometheus_url),
        }

    @property
    def inventory(self) -> Inventory:
        """Hosts and the command allow-list, validated when the settings were built."""
        inventory: Inventory = self._kept("_inventory")
        return inventory


def from_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """``AUTOHEAL_FOO_BAR=x`` -> ``{"foo_bar": "x"}`` for the fields Settings knows.

    Pydantic turns the strings into the fields' types ("true", "5", paths) and names the field
    when it cannot. (pydantic-settings did this too, for 5 MB more resident memory.)
    """
    known = Settings.model_fields
    values = {}
    for key, value in environ.items():
        if key.startswith(ENV_PREFIX):
            name = key[len(ENV_PREFIX) :].lower()
            if name in known:
                values[name] = value
    return values


def load_settings(
    config_file: Path | None = None, environ: Mapping[str, str] | None = None, **overrides: Any
) -> Settings:
    """Build Settings: overrides, then the environment, then the optional YAML file."""
    data: dict[str, Any] = {}
    if config_file is not None:
        try:
            loaded = yaml.safe_load(config_file.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{config_file}: {exc}") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{config_file}: top level must be a mapping")
        data.update(loaded or {})
    data.update(from_environment(os.environ if environ is None else environ))
    data.update(overrides)
    try:
        return Settings.model_validate(data)
    except ValueError as exc:
        raise ConfigError(f"invalid settings: {exc}") from exc
