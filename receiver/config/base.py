"""What every group of settings shares: frozen, no unknown keys, and the small parsers the
groups' checks use."""

from __future__ import annotations

import ipaddress
from typing import Any

from pydantic import BaseModel, ConfigDict

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Group(BaseModel):
    """A group of settings; ``Settings`` inherits them all (one flat set of names, as the
    environment and the YAML file spell them)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def _keep(self, name: str, value: Any) -> None:
        """Keep something compiled from the settings (the model is frozen)."""
        object.__setattr__(self, name, value)

    def _kept(self, name: str) -> Any:
        return self.__dict__[name]


def http_url(name: str, url: str | None) -> None:
    if url is not None and not url.startswith(("http://", "https://")):
        raise ValueError(f"{name} must be an http(s) URL")


def networks(value: str, name: str) -> tuple[Network, ...]:
    """Comma-separated addresses or CIDRs."""
    try:
        return tuple(
            ipaddress.ip_network(part.strip(), strict=False)
            for part in value.split(",")
            if part.strip()
        )
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from exc
