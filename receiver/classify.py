"""Classifier: error type from labels and text, by rules in playbooks/classifiers.yaml."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from receiver.domain import ErrorType, Severity, parse_severity, strict_severity
from receiver.errors import PlaybookError
from receiver.textmatch import TextPatterns, fold

CLASSIFIERS_FILE = "classifiers.yaml"
_TYPE_NAMES = frozenset(ErrorType.__members__)  # (__members__ builds a new mapping per use)


class _RuleModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    error_type: ErrorType
    patterns: list[Annotated[str, StringConstraints(min_length=1)]] = Field(default_factory=list)
    regex: list[Annotated[str, StringConstraints(min_length=1)]] = Field(default_factory=list)


class _FileModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    alertnames: dict[str, ErrorType] = Field(default_factory=dict)
    severities: dict[ErrorType, str] = Field(default_factory=dict)
    rules: list[_RuleModel] = Field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Rule:
    error_type: ErrorType
    patterns: TextPatterns


@dataclass(frozen=True, slots=True)
class Classifier:
    """Explicit ``error_type`` label, then alertname mapping, then the first matching rule."""

    alertnames: Mapping[str, ErrorType]
    rules: tuple[Rule, ...]
    # The severity of a report or alert that carries none (or a word autoheal does not know):
    # a scheduler's OOM report rarely says how bad it is, and the OOM playbooks need P1.
    severities: Mapping[ErrorType, Severity] = field(default_factory=dict)
    _by_text_cached: Callable[[str], ErrorType] = field(init=False, repr=False, compare=False)

    def classify(self, labels: Mapping[str, str], text: str) -> ErrorType:
        explicit = labels.get("error_type", "").strip().upper()
        if explicit in _TYPE_NAMES:
            return ErrorType(explicit)
        mapped = self.alertnames.get(labels.get("alertname", ""))
        if mapped is not None:
            return mapped
        return self._by_text_cached(text)

    def severity(self, error_type: ErrorType, given: str | None) -> Severity:
        """The sender's severity when it gives one autoheal knows, else the error type's
        default (``severities`` in classifiers.yaml), else P2."""
        return parse_severity(given, self.severities.get(error_type, Severity.P2))

    def source_of(self, labels: Mapping[str, str]) -> str:
        """Where ``classify`` takes the error type from, in words (for people)."""
        if labels.get("error_type", "").strip().upper() in _TYPE_NAMES:
            return "its error_type label"
        if labels.get("alertname", "") in self.alertnames:
            return f"the alertname mapping of {labels['alertname']!r}"
        return "its text (a classifier rule)"

    def _by_text(self, text: str) -> ErrorType:
        folded = fold(text)
        for rule in self.rules:
            if rule.patterns.search(folded):
                return rule.error_type
        return ErrorType.UNKNOWN

    def __post_init__(self) -> None:
        # Alertmanager resends the same alerts and a failing job repeats its message: remember
        # recent verdicts per text (bounded; the classifier is immutable, so they stay true).
        cached = functools.lru_cache(maxsize=4096)(self._by_text)
        object.__setattr__(self, "_by_text_cached", cached)

    @classmethod
    def empty(cls) -> Classifier:
        return cls({}, ())


def load_classifier(directory: Path) -> Classifier:
    """Load ``classifiers.yaml`` from the playbooks directory (absent: classify by label only)."""
    path = directory / CLASSIFIERS_FILE
    if not path.exists():
        return Classifier.empty()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        model = _FileModel.model_validate(raw)
    except yaml.YAMLError as exc:
        raise PlaybookError(str(path), None, None, f"not valid YAML: {exc}") from exc
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        raise PlaybookError(str(path), None, field, err["msg"]) from exc
    rules = []
    for index, rule in enumerate(model.rules):
        if not rule.patterns and not rule.regex:
            raise PlaybookError(str(path), None, f"rules.{index}", "needs patterns or regex")
        try:
            patterns = TextPatterns.build(rule.patterns, rule.regex)
        except re.error as exc:
            raise PlaybookError(str(path), None, f"rules.{index}.regex", str(exc)) from exc
        rules.append(Rule(rule.error_type, patterns))
    severities = {}
    for error_type, word in model.severities.items():
        try:
            severities[error_type] = strict_severity(word)
        except ValueError as exc:
            raise PlaybookError(
                str(path), None, f"severities.{error_type.value}", str(exc)
            ) from exc
    return Classifier(dict(model.alertnames), tuple(rules), severities)
