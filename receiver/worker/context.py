"""What every lifecycle step is handed: settings, this replica's name, clients, scopes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from receiver.actions import Action
from receiver.config import Settings
from receiver.evidence import EvidencePolicy
from receiver.notify.notices import Announcer
from receiver.resources import Resources
from receiver.worker.decisions import Policy


def now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class StepContext:
    settings: Settings
    owner: str  # names this replica in leases and heal logs
    resources: Resources | None
    scope: Mapping[str, Any]  # what actions validate templated values against (param_scope)
    policy: Policy  # the settings the rules read, taken from ``settings`` once
    actions: Mapping[str, Action]  # what runs an action of each kind
    notify: Announcer  # where escalations and heals are announced (outbox rows)
    evidence: EvidencePolicy = field(default_factory=EvidencePolicy)  # looked at before acting
