"""Case-insensitive substring and regex matching that survives non-ASCII text."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass


def fold(text: str) -> str:
    """NFKC then casefold: full-width letters and odd cases compare equal to ASCII."""
    if text.isascii():  # NFKC changes nothing in ASCII; skip it on the hot path
        return text.lower()
    return unicodedata.normalize("NFKC", text).casefold()


@dataclass(frozen=True, slots=True)
class TextPatterns:
    """ANY of the substrings or regexes; empty matches everything.

    All of them are compiled into one alternation, so a search is a single pass in C.
    """

    combined: re.Pattern[str] | None = None

    @classmethod
    def build(cls, substrings: Iterable[str] = (), regexes: Iterable[str] = ()) -> TextPatterns:
        """Compile; raises re.error naming the bad regex."""
        sources = tuple(regexes)
        for source in sources:
            re.compile(source)  # a bad one is reported on its own, not inside the alternation
        parts = [re.escape(fold(s)) for s in substrings] + [f"(?:{r})" for r in sources]
        return cls(re.compile("|".join(parts), re.IGNORECASE) if parts else None)

    def search(self, folded_text: str) -> bool:
        """True when any pattern occurs in text already passed through fold()."""
        return self.combined is None or self.combined.search(folded_text) is not None
