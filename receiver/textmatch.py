"""Text, as matching and knowledge see it: case-insensitive substring and regex matching
that survives non-ASCII text, and the signature that groups messages of the same fault."""

from __future__ import annotations

import hashlib
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


_SIGNATURE_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I), "<uuid>"),
    (re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?\b"), "<ip>"),
    (re.compile(r"\b(?:[0-9a-f]{0,4}:){2,7}[0-9a-f]{0,4}\b", re.I), "<ip6>"),
    (re.compile(r"\b0x[0-9a-f]+\b", re.I), "<addr>"),
    (re.compile(r"\b[0-9a-f]{12,}\b", re.I), "<hex>"),
    (re.compile(r"\d+"), "<n>"),
    (re.compile(r"\s+"), " "),
)


def normalise_message(message: str) -> str:
    """The message lower-cased with numbers, ids and addresses replaced by placeholders."""
    text = message.strip().lower()[:2000]
    for pattern, repl in _SIGNATURE_RULES:
        text = pattern.sub(repl, text)
    return text.strip()


def message_signature(message: str) -> str:
    """A stable hash of the normalised message.

    "pid 123 at 0x7f.. from 10.0.0.5:5432" and "pid 9 at 0x1a.. from 10.0.0.7:5432" agree.
    """
    return hashlib.sha256(normalise_message(message).encode()).hexdigest()[:16]
