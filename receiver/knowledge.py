"""What autoheal has learned, as pure functions: success rates that order playbooks, and an
offline text similarity that names past heals for a fault no playbook matches."""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from receiver.textmatch import normalise_message

# A playbook's learned rate counts once it has this many attempts for the fault; before
# that it is taken as even odds, so an untried playbook is not buried by one lucky rival.
MIN_ATTEMPTS = 3
PRIOR = 0.5
RECENT = 50  # heal times kept per row for the median
SIMILAR_AT_LEAST = 0.3


@dataclass(frozen=True, slots=True)
class Record:
    attempts: int
    successes: int

    @property
    def rate(self) -> float:
        return self.successes / self.attempts if self.attempts else 0.0


def learned_rate(record: Record | None, min_attempts: int = MIN_ATTEMPTS) -> float:
    if record is None or record.attempts < min_attempts:
        return PRIOR
    return record.rate


class _Named(Protocol):
    @property
    def name(self) -> str: ...


P = TypeVar("P", bound=_Named)


def order_by_knowledge(
    found: Sequence[P], ids: Mapping[str, int], records: Mapping[int, Record]
) -> list[P]:
    """Matching playbooks by learned success rate (after MIN_ATTEMPTS), then as declared
    (priority, then specificity: the order ``candidates`` gave). A stable sort."""
    return sorted(found, key=lambda p: -learned_rate(records.get(ids[p.name])))


def median(values: Sequence[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


_WORD = re.compile(r"[a-z_<>]{2,}|<n>")


def shingles(message: str) -> frozenset[str]:
    """Words and word pairs of the normalised message (numbers and ids as placeholders)."""
    words = _WORD.findall(normalise_message(message))
    return frozenset(words) | frozenset(f"{a} {b}" for a, b in itertools.pairwise(words))


def similarity(a: frozenset[str], b: frozenset[str]) -> float:
    """Jaccard similarity of two shingle sets, 0..1."""
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)
