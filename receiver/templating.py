"""Fill ``${labels.NAME}`` slots in playbook parameters from a signal's labels.

Only whole values are substituted; the result is then validated by the action's parameter
model, whose slot patterns decide what alert data may become. Nothing here runs anything.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from receiver.errors import SlotError

_REF = re.compile(r"\$\{(labels|annotations)\.([a-zA-Z_][a-zA-Z0-9_]*)\}")
_ANY_DOLLAR_BRACE = re.compile(r"\$\{[^}]*\}?")


def references(value: str) -> list[tuple[str, str]]:
    """The (kind, name) pairs a template string refers to; ValueError on malformed ones."""
    refs = [(m[1], m[2]) for m in _REF.finditer(value)]
    leftover = _REF.sub("", value)
    if _ANY_DOLLAR_BRACE.search(leftover):
        raise ValueError(f"bad template in {value!r}: use ${{labels.NAME}}")
    return refs


def render(
    params: Mapping[str, Any], labels: Mapping[str, str], annotations: Mapping[str, str]
) -> dict[str, Any]:
    """Substitute label/annotation values; a missing one is a SlotError (refused)."""
    sources = {"labels": labels, "annotations": annotations}

    def fill(key: str, value: Any) -> Any:
        if isinstance(value, str) and "${" in value:

            def one(match: re.Match[str]) -> str:
                found = sources[match[1]].get(match[2])
                if found is None:
                    raise SlotError(key, match[0], f"{match[1]}.{match[2]} is not set")
                return found

            return _REF.sub(one, value)
        if isinstance(value, dict):
            return {k: fill(f"{key}.{k}", v) for k, v in value.items()}
        if isinstance(value, list):
            return [fill(f"{key}.{i}", v) for i, v in enumerate(value)]
        return value

    return {k: fill(k, v) for k, v in params.items()}
