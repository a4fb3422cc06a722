"""Label matchers in Alertmanager's syntax: ``name="v"``, ``!=``, ``=~``, ``!~``.

Regexes are anchored at both ends, as in Alertmanager; a missing label reads as "".
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass


class MatchOp(enum.StrEnum):
    EQ = "="
    NE = "!="
    RE = "=~"
    NRE = "!~"


_MATCHER = re.compile(
    r"""^\s*(?P<name>[a-zA-Z_][a-zA-Z0-9_]*)\s*(?P<op>=~|!~|!=|=)\s*
        (?P<value>"(?:[^"\\]|\\.)*"|[^"\s,{}=!~]*)\s*$""",
    re.VERBOSE,
)


@dataclass(frozen=True, slots=True)
class Matcher:
    name: str
    op: MatchOp
    value: str
    regex: re.Pattern[str] | None = None

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.op is MatchOp.EQ:
            return actual == self.value
        if self.op is MatchOp.NE:
            return actual != self.value
        assert self.regex is not None
        found = self.regex.fullmatch(actual) is not None
        return found if self.op is MatchOp.RE else not found

    def __str__(self) -> str:
        return f"{self.name}{self.op.value}{json.dumps(self.value)}"


def parse_matcher(text: str) -> Matcher:
    """Parse one matcher; ValueError says what is wrong."""
    found = _MATCHER.match(text)
    if found is None:
        raise ValueError(f'not a matcher: {text!r} (expected e.g. container=~"momo-.*")')
    raw = found["value"]
    value = json.loads(raw) if raw.startswith('"') else raw
    op = MatchOp(found["op"])
    regex = None
    if op in (MatchOp.RE, MatchOp.NRE):
        try:
            regex = re.compile(value)
        except re.error as exc:
            raise ValueError(f"bad regex in {text!r}: {exc}") from exc
    return Matcher(found["name"], op, value, regex)


def parse_matchers(texts: list[str], field: str) -> tuple[Matcher, ...]:
    """Several matchers; ValueError names the field and which one."""
    out = []
    for i, text in enumerate(texts):
        try:
            out.append(parse_matcher(text))
        except ValueError as exc:
            raise ValueError(f"{field}.{i}: {exc}") from None
    return tuple(out)


def matcher_key(matchers: tuple[Matcher, ...]) -> str:
    """A set of matchers as one string (Alertmanager's syntax, comma-separated)."""
    return ", ".join(str(m) for m in matchers)


def all_match(matchers: tuple[Matcher, ...], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)
