"""Settings: environment variables (prefix ``AUTOHEAL_``) over an optional YAML file.

Built once by the entry point and passed down; nothing reads the environment later.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from receiver.errors import ConfigError
from receiver.evidence import DEFAULT_REDACT, compile_patterns
from receiver.inventory import DEFAULT_COMMANDS, HostConfig, Inventory, build_inventory
from receiver.matchers import Matcher, parse_matchers
from receiver.timeintervals import TimeIntervalModel, Windows, build_windows

PACKAGE_DIR = Path(__file__).resolve().parent


def default_playbooks_dir() -> Path:
    """The playbooks shipped with the source tree, else ./playbooks."""
    bundled = PACKAGE_DIR.parent / "playbooks"
    return bundled if bundled.is_dir() else Path("playbooks")


ENV_PREFIX = "AUTOHEAL_"


def _url_password(url: str) -> str | None:
    """The password in a database URL, if it has one."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).password
    except ArgumentError:
        return None


class Settings(BaseModel):
    """Every knob of the service. See README.md, section Settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    listen: str = "127.0.0.1:9095"
    database_url: str = "sqlite+aiosqlite:///autoheal.db"
    playbooks: Path = Field(default_factory=default_playbooks_dir)
    auth_token: SecretStr | None = None
    auth_token_file: Path | None = None
    basic_auth: SecretStr | None = None
    basic_auth_file: Path | None = None
    dry_run: bool = False
    # The Docker Engine API of host "local" (unless hosts: names a "local" of its own).
    docker_url: str | None = "unix:///var/run/docker.sock"
    # Host inventory and the SSH command allow-list (config file; see README, Hosts).
    hosts: dict[str, HostConfig] = Field(default_factory=dict)
    commands: dict[str, list[str]] = Field(default_factory=lambda: dict(DEFAULT_COMMANDS))
    # Base URLs the http action may call (a URL must start with one of them).
    http_allow: list[str] = Field(default_factory=list)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    max_alerts_per_request: int = Field(default=1000, ge=1)
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
    # A request's head (request line and headers) must arrive within this of its first byte,
    # and its body within body_timeout_seconds once the credentials were checked.
    header_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    body_timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    # How people reach autoheal's API: links to incidents in messages (default: listen).
    external_url: str | None = None
    # Failed logins (the page's form, or an API request with a wrong credential) from one
    # client address, across replicas: this many within the window refuse the address
    # (429) until the oldest ages out (0: off). Behind a reverse proxy, name it (addresses
    # or CIDRs, comma-separated) so the client is read from its X-Forwarded-For.
    login_max_failures: int = Field(default=5, ge=0, le=10_000)
    login_failure_window_seconds: float = Field(default=300.0, gt=0, le=86_400)
    # Never locked out (as fail2ban's ignoreip): on one host, Alertmanager and a scheduler
    # with a stale token share 127.0.0.1, and the stale one must not lock Alertmanager out.
    login_exempt: str = "127.0.0.0/8,::1"
    trusted_proxies: str = ""
    # How often the page's live lists and an active incident refresh (with JavaScript on).
    ui_refresh_seconds: int = Field(default=5, ge=2, le=3600)
    # Notification channels; each is on when its settings are given (see README, Notify).
    telegram_token: SecretStr | None = None
    telegram_token_file: Path | None = None
    telegram_chat_id: str | None = None
    telegram_base_url: str = "https://api.telegram.org"
    # Approval buttons: Telegram posts button presses to /api/v1/telegram/updates with this
    # secret (setWebhook's secret_token); only these user ids (comma-separated) may decide.
    telegram_webhook_secret: SecretStr | None = None
    telegram_webhook_secret_file: Path | None = None
    telegram_approvers: str = ""
    notify_webhook_url: str | None = None
    notify_webhook_token: SecretStr | None = None
    notify_webhook_token_file: Path | None = None
    notify_healing: bool = False  # also tell when a repair starts
    notify_batch_seconds: float = Field(default=2.0, gt=0)  # how long notices gather
    notify_summary_after: int = Field(default=5, ge=2)  # this many in a batch: one summary
    notify_timeout_seconds: float = Field(default=10.0, gt=0)
    # Escalations handed back to Alertmanager as AutoHealEscalated alerts (comma-separated
    # URLs: every peer of an HA cluster, as Alertmanager's clients should).
    alertmanager_url: str | None = None
    alertmanager_token: SecretStr | None = None
    alertmanager_token_file: Path | None = None
    alertmanager_repost_seconds: float = Field(default=60.0, gt=0)
    # Maintenance windows, in Alertmanager's time_intervals syntax (config file), and the
    # names that hold every playbook's actions back (see README, Maintenance windows).
    time_intervals: list[TimeIntervalModel] = Field(default_factory=list)
    mute_time_intervals: list[str] = Field(default_factory=list)
    active_time_intervals: list[str] = Field(default_factory=list)
    # More actions than this on one target within the window quarantine it until a person
    # lifts it (a restart-loop latch; a playbook may set its own; 0: off).
    quarantine_after: int = Field(default=5, ge=0, le=10_000)
    quarantine_window_minutes: float = Field(default=60, gt=0, le=7 * 24 * 60)
    # Alerts that hold every action back while they fire in Alertmanager (matchers, e.g.
    # 'alertname=~"Deploy.*"'); asked of alertmanager_url. Unreachable: wait (fail closed)
    # unless blocked_fail_open; blocked longer than blocked_escalate_after_minutes: escalate.
    blocked_by: list[str] = Field(default_factory=list)
    blocked_fail_open: bool = False
    blocked_escalate_after_minutes: float = Field(default=30, gt=0, le=7 * 24 * 60)
    blocked_recheck_seconds: float = Field(default=30, gt=0, le=3600)
    # Prometheus, asked the size of a fleet (a playbook's fleet_query, for its blast radius).
    prometheus_url: str | None = None
    # Before acting on an alert's incident that waited, ask Alertmanager whether the alert
    # is still active (not resolved, not silenced by a person meanwhile).
    recheck_alerts: bool = True
    # Evidence before acting: a container's State and last log lines (and a host's
    # diagnostic command) kept in the heal log, bounded and redacted; a capture slower than
    # the timeout keeps what it has and the action runs anyway (README, Evidence).
    # How often a worker replica looks for declared tasks' missed and overrunning runs.
    task_watch_seconds: float = Field(default=5.0, gt=0, le=3600)
    evidence: bool = True
    evidence_log_lines: int = Field(default=200, ge=0, le=10_000)
    evidence_log_bytes: int = Field(default=65_536, ge=0, le=1_048_576)
    evidence_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    evidence_redact: list[str] = Field(default_factory=lambda: list(DEFAULT_REDACT))

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("must be host:port, e.g. 127.0.0.1:9095")
        return value

    @field_validator("basic_auth")
    @classmethod
    def _check_basic(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and ":" not in value.get_secret_value():
            raise ValueError("must be user:password")
        return value

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
    def _read_secret_files(self) -> Settings:
        # Secrets may live in files (Kubernetes/systemd credentials); read them once here.
        for attr, file_attr in (
            ("auth_token", "auth_token_file"),
            ("basic_auth", "basic_auth_file"),
            ("telegram_token", "telegram_token_file"),
            ("telegram_webhook_secret", "telegram_webhook_secret_file"),
            ("notify_webhook_token", "notify_webhook_token_file"),
            ("alertmanager_token", "alertmanager_token_file"),
        ):
            path = getattr(self, file_attr)
            if path is not None and getattr(self, attr) is None:
                try:
                    secret = path.read_text(encoding="utf-8").strip()
                except OSError as exc:
                    raise ValueError(f"{file_attr}: cannot read {path}: {exc.strerror}") from exc
                object.__setattr__(self, attr, SecretStr(secret))
        if self.basic_auth is not None and ":" not in self.basic_auth.get_secret_value():
            raise ValueError("basic_auth must be user:password")
        if (self.telegram_token is None) != (self.telegram_chat_id is None):
            raise ValueError("telegram needs both telegram_token (or _file) and telegram_chat_id")
        for name in ("telegram_base_url", "notify_webhook_url", "external_url"):
            url = getattr(self, name)
            if url is not None and not url.startswith(("http://", "https://")):
                raise ValueError(f"{name} must be an http(s) URL")
        if any(
            not part.strip().lstrip("-").isdigit()
            for part in self.telegram_approvers.split(",")
            if part.strip()
        ):
            raise ValueError("telegram_approvers must be comma-separated Telegram user ids")
        for url in self.alertmanager_urls:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"alertmanager_url: {url!r} is not an http(s) URL")
        if self.prometheus_url is not None and not self.prometheus_url.startswith(
            ("http://", "https://")
        ):
            raise ValueError("prometheus_url must be an http(s) URL")
        object.__setattr__(
            self, "_trusted_proxies", _networks(self.trusted_proxies, "trusted_proxies")
        )
        object.__setattr__(self, "_login_exempt", _networks(self.login_exempt, "login_exempt"))
        if self.blocked_by and not self.alertmanager_urls:
            raise ValueError("blocked_by needs alertmanager_url (the alerts are asked there)")
        object.__setattr__(self, "_blocked_by", parse_matchers(self.blocked_by, "blocked_by"))
        patterns = compile_patterns(self.evidence_redact, "evidence_redact")
        object.__setattr__(self, "_evidence_redact", patterns)
        object.__setattr__(
            self, "_inventory", build_inventory(self.hosts, self.commands, self.docker_url)
        )
        windows = build_windows(
            self.time_intervals, self.mute_time_intervals, self.active_time_intervals
        )
        object.__setattr__(self, "_windows", windows)
        return self

    def secrets(self) -> list[str]:
        """Every configured secret as it could appear in a log line (redacted there)."""
        values = [
            secret.get_secret_value()
            for secret in (
                self.auth_token,
                self.basic_auth,
                self.telegram_token,
                self.telegram_webhook_secret,
                self.notify_webhook_token,
                self.alertmanager_token,
            )
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
    def blocked_matchers(self) -> tuple[Matcher, ...]:
        matchers: tuple[Matcher, ...] = self.__dict__["_blocked_by"]
        return matchers

    @property
    def login_exempt_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        """Client addresses never locked out for wrong credentials (``login_exempt``)."""
        networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = self.__dict__[
            "_login_exempt"
        ]
        return networks

    @property
    def proxy_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        """The reverse proxies whose X-Forwarded-For is believed (``trusted_proxies``)."""
        networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = self.__dict__[
            "_trusted_proxies"
        ]
        return networks

    @property
    def evidence_patterns(self) -> tuple[re.Pattern[str], ...]:
        patterns: tuple[re.Pattern[str], ...] = self.__dict__["_evidence_redact"]
        return patterns

    @property
    def windows(self) -> Windows:
        """The compiled time intervals and the global mute/active names."""
        windows: Windows = self.__dict__["_windows"]
        return windows

    @property
    def inventory(self) -> Inventory:
        """Hosts and the command allow-list, validated when the settings were built."""
        inventory: Inventory = self.__dict__["_inventory"]
        return inventory

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])

    @property
    def alertmanager_urls(self) -> tuple[str, ...]:
        if not self.alertmanager_url:
            return ()
        return tuple(u.strip().rstrip("/") for u in self.alertmanager_url.split(",") if u.strip())

    @property
    def approver_ids(self) -> frozenset[int]:
        return frozenset(int(p) for p in self.telegram_approvers.split(",") if p.strip())

    @property
    def channels(self) -> tuple[str, ...]:
        """The notification channels that are configured, in a fixed order."""
        on = {"telegram": self.telegram_token is not None, "webhook": bool(self.notify_webhook_url)}
        return tuple(name for name, enabled in on.items() if enabled)

    @property
    def incident_base_url(self) -> str:
        """``{external_url}/api/v1/incidents``: where messages link an incident."""
        base = self.external_url or f"http://{self.listen}"
        return base.rstrip("/") + "/api/v1/incidents"

    @property
    def has_credentials(self) -> bool:
        return self.auth_token is not None or self.basic_auth is not None

    def check_exposure(self) -> None:
        """Refuse to listen beyond loopback with nobody authenticated."""
        if self.has_credentials:
            return
        try:
            loopback = ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            loopback = self.host == "localhost"
        if not loopback:
            raise ConfigError(
                f"refusing to listen on {self.listen} without credentials: "
                "set AUTOHEAL_AUTH_TOKEN or AUTOHEAL_BASIC_AUTH, or listen on 127.0.0.1"
            )


def _networks(value: str, name: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """Comma-separated addresses or CIDRs."""
    try:
        return tuple(
            ipaddress.ip_network(part.strip(), strict=False)
            for part in value.split(",")
            if part.strip()
        )
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from exc


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
