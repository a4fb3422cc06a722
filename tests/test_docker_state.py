"""Reading Docker's container state: is the new StartedAt really newer?"""

from __future__ import annotations

import pytest

from receiver.actions._docker import _newer


@pytest.mark.parametrize(
    ("after", "before", "newer"),
    [
        ("2026-11-28T04:29:15.494581518Z", "2026-11-28T04:29:15.49458Z", True),  # trimmed zeros
        ("2026-11-28T04:29:15.49458Z", "2026-11-28T04:29:15.494581518Z", False),
        ("2026-11-28T04:29:16Z", "2026-11-28T04:29:15.999999999Z", True),
        ("2026-11-28T04:29:15Z", "0001-01-01T00:00:00Z", True),  # never started before
        ("2026-11-28T04:29:15Z", "2026-11-28T04:29:15Z", False),
        ("", "2026-11-28T04:29:15Z", False),
        ("2026-11-28T05:29:15+01:00", "2026-11-28T04:29:14Z", True),
    ],
)
def test_started_at_must_be_newer(after: str, before: str, newer: bool) -> None:
    assert _newer(after, before) is newer
