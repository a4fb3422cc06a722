"""Strict patterns for values that alert data may put into an action (container names, paths).

ASCII ranges only, so look-alike letters fail; lengths bounded. A value either matches in full
or the action is refused before anything connects anywhere.
"""

from __future__ import annotations

import re

# Docker's own container-name rule, bounded.
DOCKER_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}")
# An inventory host name.
HOST_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}")
# An absolute path of plain segments: no "..", no spaces or shell characters.
ABS_PATH = re.compile(r"(/[a-zA-Z0-9_.-]+)+")

SLOT_PATTERNS: dict[str, re.Pattern[str]] = {
    "container": DOCKER_NAME,
    "service": DOCKER_NAME,
    "file": ABS_PATH,
}


def check_slot(slot: str, value: str) -> str | None:
    """None when value fits the slot, else the reason it does not."""
    pattern = SLOT_PATTERNS.get(slot)
    if pattern is None:
        return f"unknown slot {slot!r}"
    if pattern.fullmatch(value) is None:
        return f"must match {pattern.pattern}"
    if slot == "file" and any(part in ("..", ".") for part in value.split("/")):
        return "no '.' or '..' segments"
    return None
