from __future__ import annotations

import pytest

from receiver.matchers import MatchOp, parse_matcher


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ('container="momo-db"', {"container": "momo-db"}, True),
        ('container="momo-db"', {"container": "momo-db2"}, False),
        ('container!="momo-db"', {"container": "x"}, True),
        ('container=~"momo-.*"', {"container": "momo-scheduler"}, True),
        ('container=~"momo-.*"', {"container": "xmomo-scheduler"}, False),  # anchored
        ('container!~"momo-.*"', {"container": "redis"}, True),
        ('container=""', {}, True),  # a missing label reads as empty
        ("severity=critical", {"severity": "critical"}, True),
        ('name="with \\"quote\\""', {"name": 'with "quote"'}, True),
    ],
)
def test_matchers(text: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_matcher(text).matches(labels) is expected


def test_round_trip() -> None:
    m = parse_matcher('container =~ "momo-.*"')
    assert m.op is MatchOp.RE
    assert str(m) == 'container=~"momo-.*"'


@pytest.mark.parametrize("bad", ["container", "1abc=x", 'a=~"("', "a==b", 'a="unterminated'])
def test_bad_matchers(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_matcher(bad)
