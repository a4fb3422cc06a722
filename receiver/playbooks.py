"""Playbooks: YAML under playbooks/, validated at load, matched against signals.

A load error names the file, the playbook and the field, and stops ``autoheal check`` and
start-up alike: a typo must never turn into a silent "no playbook".
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from receiver.actions import ACTIONS, Action
from receiver.brakes import BrakeError, Brakes, BrakesModel
from receiver.classify import CLASSIFIERS_FILE, Classifier
from receiver.domain import ErrorType, Severity, Signal, strict_severity
from receiver.errors import PlaybookError
from receiver.matchers import Matcher, all_match, parse_matcher
from receiver.tasks import TASKS_FILE
from receiver.templating import references
from receiver.textmatch import TextPatterns, fold

NonEmpty = Annotated[str, StringConstraints(min_length=1, max_length=500)]


class _ActionModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: str
    params: dict[str, Any] = Field(default_factory=dict)


class _PlaybookModel(BrakesModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
    description: str = ""
    error_type: ErrorType
    patterns: list[NonEmpty] = Field(default_factory=list)
    regex: list[NonEmpty] = Field(default_factory=list)
    matchers: list[NonEmpty] = Field(default_factory=list)
    severity_min: str = "P3"
    action: _ActionModel
    cooldown_minutes: float = Field(default=30, ge=0, le=7 * 24 * 60)
    max_retries: int = Field(default=3, ge=1, le=100)
    verify_seconds: float | None = Field(default=None, ge=0, le=24 * 3600)
    dry_run: bool = False
    active: bool = True
    priority: int = 0
    # required: the action waits for a person's approval (API or Telegram button).
    approval: Literal["none", "required"] = "none"
    approval_timeout_minutes: float = Field(default=30, gt=0, le=7 * 24 * 60)


class _FileModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    playbooks: list[dict[str, Any]] = Field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Playbook:
    """One validated playbook."""

    name: str
    file: str
    description: str
    error_type: ErrorType
    pattern_list: tuple[str, ...]
    regex_list: tuple[str, ...]
    patterns: TextPatterns
    matchers: tuple[Matcher, ...]
    severity_min: Severity
    action_type: str
    action_params: Mapping[str, Any]
    cooldown_minutes: float
    max_retries: int
    verify_seconds: float | None
    dry_run: bool
    active: bool
    priority: int
    approval_required: bool = False
    approval_timeout_minutes: float = 30
    brakes: Brakes = field(default_factory=Brakes)

    def matches(self, signal: Signal, folded_text: str | None = None) -> bool:
        """Error type, minimum severity, label matchers, then ANY pattern."""
        if not self.active or signal.error_type is not self.error_type:
            return False
        if not signal.severity.at_least(self.severity_min):
            return False
        if not all_match(self.matchers, signal.labels):
            return False
        text = folded_text if folded_text is not None else fold(signal.match_text)
        return self.patterns.search(text)

    def mismatch(self, signal: Signal, folded_text: str | None = None) -> tuple[int, str] | None:
        """Why this playbook does not match the signal, in words, with how far the signal got
        through the checks (0-3, in ``matches``' order); None when it matches."""
        if not self.active:
            return 0, f"playbook {self.name!r} is inactive"
        if signal.error_type is not self.error_type:
            return 0, f"playbook {self.name!r} handles {self.error_type.value}"
        if not signal.severity.at_least(self.severity_min):
            return 1, (
                f"playbook {self.name!r} needs severity {self.severity_min.value} or higher, "
                f"this is {signal.severity.value} (set a severity label or field)"
            )
        for matcher in self.matchers:
            if not matcher.matches(signal.labels):
                actual = signal.labels.get(matcher.name)
                seen = f"it has {matcher.name}={actual!r}" if actual is not None else "absent"
                return 2, f"playbook {self.name!r} needs {matcher} ({seen})"
        text = folded_text if folded_text is not None else fold(signal.match_text)
        if not self.patterns.search(text):
            shown = ", ".join(repr(p) for p in [*self.pattern_list, *self.regex_list][:4])
            return 3, f"playbook {self.name!r} needs one of its patterns in the text ({shown})"
        return None

    def definition(self) -> dict[str, Any]:
        """The stored form; its hash tells a sync whether the row changed."""
        return {
            "name": self.name,
            "description": self.description,
            "error_type": self.error_type.value,
            "match_pattern": list(self.pattern_list),
            "regex": list(self.regex_list),
            "matchers": [str(m) for m in self.matchers],
            "severity_min": self.severity_min.value,
            "action_type": self.action_type,
            "action_params": dict(self.action_params),
            "cooldown_min": self.cooldown_minutes,
            "max_retries": self.max_retries,
            "verify_seconds": self.verify_seconds,
            "dry_run": self.dry_run,
            "is_active": self.active,
            "priority": self.priority,
            "approval": "required" if self.approval_required else "none",
            "approval_timeout_minutes": self.approval_timeout_minutes,
            **self.brakes.definition(),
            "file": self.file,
        }

    @property
    def digest(self) -> str:
        blob = json.dumps(self.definition(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:32]


def candidates(playbooks: Iterable[Playbook], signal: Signal) -> list[Playbook]:
    """Matching playbooks, best first: priority, then the most specific (most matchers)."""
    folded = fold(signal.match_text)
    found = [p for p in playbooks if p.matches(signal, folded)]
    found.sort(key=lambda p: (-p.priority, -len(p.matchers), p.name))
    return found


def explain_no_match(playbooks: Sequence[Playbook], signal: Signal, classifier: Classifier) -> str:
    """What would have made a playbook match ``signal``, for the people it is escalated to:
    how it was classified, and the nearest playbook with what excluded it."""
    kind = signal.error_type.value
    if signal.error_type is ErrorType.UNKNOWN:
        alertname = signal.labels.get("alertname")
        mapped = f"alertname {alertname!r} is not mapped" if alertname else "no alertname"
        parts = [
            f"Classified UNKNOWN: no error_type label, {mapped} in classifiers.yaml, and no "
            "classifier rule matched the text. Add an error_type label (e.g. error_type: "
            "DB_UNREACHABLE) to the alert rule or report, or map the alertname"
        ]
    else:
        parts = [f"Classified {kind} by {classifier.source_of(signal.labels)}"]
    same = [p for p in playbooks if p.error_type is signal.error_type and p.active]
    if not same:
        if signal.error_type is not ErrorType.UNKNOWN:
            parts.append(f"no active playbook handles {kind}: write one")
        return "; ".join(parts) + "."
    folded = fold(signal.match_text)
    # The nearest: the one that got furthest through the checks (severity, matchers, text).
    found = [m for m in (p.mismatch(signal, folded) for p in same) if m is not None]
    if found:
        parts.append(f"nearest: {max(found, key=lambda m: m[0])[1]}")
    return ("; ".join(parts) + ".")[:1000]


def _build(
    model: _PlaybookModel, file: str, scope: Mapping[str, Any], actions: Mapping[str, Action]
) -> Playbook:
    def fail(field: str, message: str) -> PlaybookError:
        return PlaybookError(file, model.name, field, message)

    try:
        severity = strict_severity(model.severity_min)
    except ValueError as exc:
        raise fail("severity_min", str(exc)) from exc
    matchers = []
    for i, text in enumerate(model.matchers):
        try:
            matchers.append(parse_matcher(text))
        except ValueError as exc:
            raise fail(f"matchers.{i}", str(exc)) from exc
    try:
        patterns = TextPatterns.build(model.patterns, model.regex)
    except re.error as exc:
        raise fail("regex", f"does not compile: {exc}") from exc
    action = actions.get(model.action.type)
    if action is None:
        known = ", ".join(sorted(actions))
        raise fail("action.type", f"unknown action {model.action.type!r} (known: {known})")
    for key, value in model.action.params.items():
        if isinstance(value, str):
            try:
                references(value)
            except ValueError as exc:
                raise fail(f"action.params.{key}", str(exc)) from exc
    try:
        action.params_model.model_validate(
            model.action.params, context={**scope, "templated": True}
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise fail(f"action.params.{loc}" if loc else "action.params", err["msg"]) from exc
    try:
        brakes = Brakes.of(model, scope)
    except BrakeError as exc:
        raise fail(exc.field, str(exc)) from exc
    return Playbook(
        name=model.name,
        file=file,
        description=model.description,
        error_type=model.error_type,
        pattern_list=tuple(model.patterns),
        regex_list=tuple(model.regex),
        patterns=patterns,
        matchers=tuple(matchers),
        severity_min=severity,
        action_type=model.action.type,
        action_params=dict(model.action.params),
        cooldown_minutes=model.cooldown_minutes,
        max_retries=model.max_retries,
        verify_seconds=model.verify_seconds,
        dry_run=model.dry_run,
        active=model.active,
        priority=model.priority,
        approval_required=model.approval == "required",
        approval_timeout_minutes=model.approval_timeout_minutes,
        brakes=brakes,
    )


def parse_playbooks(
    text: str,
    file: str,
    scope: Mapping[str, Any] | None = None,
    actions: Mapping[str, Action] = ACTIONS,
) -> list[Playbook]:
    """Validate one file's text. ``scope``: hosts, commands and URLs parameters may name;
    ``actions``: the kinds an action may be."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PlaybookError(file, None, None, f"not valid YAML: {exc}") from exc
    try:
        doc = _FileModel.model_validate(raw or {})
    except ValidationError as exc:
        err = exc.errors()[0]
        raise PlaybookError(file, None, ".".join(map(str, err["loc"])), err["msg"]) from exc
    result = []
    for index, item in enumerate(doc.playbooks):
        label = str(item.get("name") or f"#{index}")
        try:
            model = _PlaybookModel.model_validate(item)
        except ValidationError as exc:
            err = exc.errors()[0]
            raise PlaybookError(file, label, ".".join(map(str, err["loc"])), err["msg"]) from exc
        result.append(_build(model, file, scope or {}, actions))
    return result


def load_playbooks(
    directory: Path,
    scope: Mapping[str, Any] | None = None,
    actions: Mapping[str, Action] = ACTIONS,
) -> list[Playbook]:
    """Every ``*.yaml``/``*.yml`` in directory but classifiers.yaml and tasks.yaml, names
    unique."""
    if not directory.is_dir():
        raise PlaybookError(str(directory), None, None, "playbooks directory does not exist")
    files = sorted(
        p
        for p in directory.iterdir()
        if p.suffix in (".yaml", ".yml") and p.name not in (CLASSIFIERS_FILE, TASKS_FILE)
    )
    seen: dict[str, str] = {}
    loaded: list[Playbook] = []
    for path in files:
        text = path.read_text(encoding="utf-8")
        for playbook in parse_playbooks(text, path.name, scope, actions):
            if playbook.name in seen:
                raise PlaybookError(
                    path.name,
                    playbook.name,
                    "name",
                    f"duplicate, first defined in {seen[playbook.name]}",
                )
            seen[playbook.name] = path.name
            loaded.append(playbook)
    return loaded
