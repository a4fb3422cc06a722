"""Who may reach autoheal and how: where it listens, the credentials, request limits, the
failed-login throttle, and how people reach it (links, the page)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import Field, SecretStr, field_validator

from receiver.config.base import Group, Network, http_url, networks
from receiver.errors import ConfigError


class AccessSettings(Group):
    listen: str = "127.0.0.1:9095"
    auth_token: SecretStr | None = None
    auth_token_file: Path | None = None
    basic_auth: SecretStr | None = None
    basic_auth_file: Path | None = None
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    max_alerts_per_request: int = Field(default=1000, ge=1)
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

    def _check_access(self) -> None:
        """Once the secret files are read (a basic_auth_file too must hold user:password)."""
        if self.basic_auth is not None and ":" not in self.basic_auth.get_secret_value():
            raise ValueError("basic_auth must be user:password")
        http_url("external_url", self.external_url)
        self._keep("_trusted_proxies", networks(self.trusted_proxies, "trusted_proxies"))
        self._keep("_login_exempt", networks(self.login_exempt, "login_exempt"))

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])

    @property
    def has_credentials(self) -> bool:
        return self.auth_token is not None or self.basic_auth is not None

    @property
    def proxy_networks(self) -> tuple[Network, ...]:
        """The reverse proxies whose X-Forwarded-For is believed (``trusted_proxies``)."""
        kept: tuple[Network, ...] = self._kept("_trusted_proxies")
        return kept

    @property
    def login_exempt_networks(self) -> tuple[Network, ...]:
        """Client addresses never locked out for wrong credentials (``login_exempt``)."""
        kept: tuple[Network, ...] = self._kept("_login_exempt")
        return kept

    @property
    def incident_base_url(self) -> str:
        """``{external_url}/api/v1/incidents``: where messages link an incident."""
        base = self.external_url or f"http://{self.listen}"
        return base.rstrip("/") + "/api/v1/incidents"

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
