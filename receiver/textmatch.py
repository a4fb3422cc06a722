"""Case-insensitive substring and regex matching that survives non-ASCII text."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass


def fold(text: str) -> str:
    """NFKC then casefold: full-width letters and odd cases compare equal to ASCII."""
    return unicodedata.normalize("NFKC", text).casefold()


@dataclass(frozen=True, slots=True)
class TextPatterns:
    """ANY of the substrings or regexes; empty matches everything."""

    substrings: tuple[str, ...] = ()
    regexes: tuple[re.Pattern[str], ...] = ()

    @classmethod
    def build(cls, substrings: Iterable[str] = (), regexes: Iterable[str] = ()) -> TextPatterns:
        """Compile; raises re.error naming the bad regex."""
        return cls(
            tuple(fold(s) for s in substrings),
            tuple(re.compile(r, re.IGNORECASE) for r in regexes),
        )

    @property
    def empty(self) -> bool:
        return not self.substrings and not self.regexes

    def search(self, folded_text: str) -> bool:
        """True when any pattern occurs in text already passed through fold()."""
        if self.empty:
            return True
        if any(s in folded_text for s in self.substrings):
            return True
        return any(r.search(folded_text) for r in self.regexes)
