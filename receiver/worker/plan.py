"""Plan (pure, no I/O): which playbook answers an incident, with its parameters filled."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from receiver.actions.base import Action, ActionParams
from receiver.catalog import Catalog
from receiver.domain import ErrorType, Severity, Signal, Source
from receiver.errors import SlotError
from receiver.knowledge import Record, order_by_knowledge
from receiver.playbooks import Playbook, candidates
from receiver.templating import render


@dataclass(frozen=True, slots=True)
class Plan:
    """What the worker means to do for an incident: playbook, filled parameters (or why they
    were refused), what runs and on what target."""

    playbook: Playbook
    playbook_id: int
    params: ActionParams | SlotError  # validated parameters, or the error that refused them
    action_detail: str
    target: str
    exclusive: bool = False  # the action needs its target to itself (one at a time)


def incident_signal(row: Mapping[str, Any]) -> Signal:
    """Rebuild the signal a stored incident came from: matching reads labels and text only."""
    return Signal(
        source=Source(row["source"]),
        idempotency_key="",
        incident_key=row["dedup_key"] or "",
        firing=True,
        task_name=row["task_name"],
        error_type=ErrorType(row["error_type"]),
        severity=Severity(row["severity"]),
        message=row["error_message"],
        labels=row["labels"] or {},
        annotations=row["annotations"] or {},
        traceback=row["error_traceback"],
        fingerprint=row["fingerprint"],
    )


def matching(catalog: Catalog, row: Mapping[str, Any]) -> list[Playbook]:
    """The playbooks that match the incident, as declared (priority, then specificity)."""
    return candidates(catalog.playbooks, incident_signal(row))


def make_plan(
    catalog: Catalog,
    actions: Mapping[str, Action],
    row: Mapping[str, Any],
    scope: Mapping[str, Any],
    found: Sequence[Playbook],
    learned: Mapping[int, Record] | None = None,
) -> Plan | None:
    """Pick among the ``found`` playbooks and fill its parameters; None when none
    matches. Several: the best learned success rate for this fault first (``learned``, by
    playbook id), then as declared. ``actions``: what runs each kind (its parameter model
    checks the filled values)."""
    found = order_by_knowledge(found, catalog.ids, learned or {})
    if not found:
        return None
    playbook = found[0]
    playbook_id = catalog.ids[playbook.name]
    action = actions[playbook.action_type]
    try:
        raw = render(playbook.action_params, row["labels"] or {}, row["annotations"] or {})
        params = action.params_model.model_validate(raw, context=scope)
    except SlotError as exc:
        return Plan(playbook, playbook_id, exc, f"{playbook.action_type} refused: {exc}", "")
    except ValidationError as exc:
        err = exc.errors()[0]
        slot = ".".join(map(str, err["loc"])) or "params"
        refused = SlotError(slot, str(err.get("input", ""))[:200], err["msg"])
        detail = f"{playbook.action_type} refused: {refused}"
        return Plan(playbook, playbook_id, refused, detail, "")
    return Plan(
        playbook,
        playbook_id,
        params,
        action.describe(params),
        action.target(params),
        action.exclusive,
    )
