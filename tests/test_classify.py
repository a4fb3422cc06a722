"""Classification: seed patterns, real library messages, precedence, non-ASCII text."""

from __future__ import annotations

from pathlib import Path

import pytest

from receiver.classify import load_classifier
from receiver.domain import ErrorType
from receiver.errors import PlaybookError
from receiver.playbooks import load_playbooks

ROOT = Path(__file__).resolve().parent.parent
CLASSIFIER = load_classifier(ROOT / "playbooks")

SEED_PATTERNS = {
    ErrorType.DNS_FAIL: [
        "name resolution",
        "could not translate host name",
        "Temporary failure in name resolution",
    ],
    ErrorType.DB_UNREACHABLE: [
        "connection refused",
        "Connection reset by peer",
        "could not connect to server",
    ],
    ErrorType.OOM: ["SIGKILL", "out of memory", "Worker was sent SIGKILL", "MemoryError"],
    ErrorType.SSL_FAIL: ["SSL connection has been closed unexpectedly", "SSL SYSCALL error"],
    ErrorType.AUTH_FAIL: [
        "invalid_grant",
        "google_token.pickle",
        "Token has been expired or revoked",
    ],
    ErrorType.CRAWLER_FAIL: ["429 Too Many Requests", "rate limit", "Retry-After"],
}

# What the libraries really print for these faults.
REAL_MESSAGES = [
    (
        ErrorType.DNS_FAIL,
        '(psycopg2.OperationalError) could not translate host name "momo-db" to '
        "address: Temporary failure in name resolution\n\n(Background on this error at: "
        "https://sqlalche.me/e/20/e3q8)",
    ),
    (
        ErrorType.DB_UNREACHABLE,
        "psycopg2.OperationalError: could not connect to server: Connection "
        'refused\n\tIs the server running on host "localhost" (127.0.0.1) and accepting\n\tTCP/IP '
        "connections on port 5432?",
    ),
    (
        ErrorType.DB_UNREACHABLE,
        '(psycopg2.OperationalError) connection to server at "10.0.0.5", '
        "port 5432 failed: Connection refused\n\tIs the server running on that host and accepting "
        "TCP/IP connections?",
    ),
    (
        ErrorType.DB_UNREACHABLE,
        "sqlalchemy.exc.OperationalError: (psycopg2.OperationalError) server "
        "closed the connection unexpectedly\n\tThis probably means the server terminated abnormally",
    ),
    (ErrorType.SSL_FAIL, "(psycopg2.OperationalError) SSL connection has been closed unexpectedly"),
    (ErrorType.SSL_FAIL, "psycopg2.OperationalError: SSL SYSCALL error: EOF detected"),
    (
        ErrorType.OOM,
        "[2026-11-28 03:00:01 +0000] [7] [ERROR] Worker (pid:1234) was sent SIGKILL! "
        "Perhaps out of memory?",
    ),
    (
        ErrorType.OOM,
        "MemoryError: Unable to allocate 3.20 GiB for an array with shape (430000000,)",
    ),
    (
        ErrorType.AUTH_FAIL,
        "google.auth.exceptions.RefreshError: ('invalid_grant: Token has been "
        "expired or revoked.', {'error': 'invalid_grant', 'error_description': 'Token has been expired "
        "or revoked.'})",
    ),
    (
        ErrorType.CRAWLER_FAIL,
        "requests.exceptions.HTTPError: 429 Client Error: Too Many Requests for "
        "url: https://shop.example.com/api/products?page=3",
    ),
    (ErrorType.DISK_FULL, "OSError: [Errno 28] No space left on device: '/data/export.csv'"),
    (
        ErrorType.DISK_FULL,
        'psycopg2.errors.DiskFull: could not extend file "base/16384/2619": No '
        "space left on device",
    ),
    (
        ErrorType.TIMEOUT,
        "requests.exceptions.ReadTimeout: HTTPSConnectionPool(host='api.example.com'"
        ", port=443): Read timed out. (read timeout=30)",
    ),
    (ErrorType.TIMEOUT, "[2026-11-28 03:00:01 +0000] [7] [CRITICAL] WORKER TIMEOUT (pid:99)"),
]


@pytest.mark.parametrize(
    ("expected", "pattern"),
    [(t, p) for t, ps in SEED_PATTERNS.items() for p in ps],
)
def test_every_seed_pattern_classifies_to_its_type(expected: ErrorType, pattern: str) -> None:
    assert CLASSIFIER.classify({}, f"job failed: {pattern} while running") is expected


def test_seed_playbook_patterns_classify_to_their_playbook_type() -> None:
    for playbook in load_playbooks(ROOT / "playbooks"):
        for pattern in playbook.pattern_list:
            if pattern == "OOMKilled" or pattern == "Too Many Requests":
                continue  # additions beyond the seed, covered by their own tests
            assert CLASSIFIER.classify({}, pattern) is playbook.error_type, (playbook.name, pattern)


@pytest.mark.parametrize(("expected", "message"), REAL_MESSAGES)
def test_real_library_messages(expected: ErrorType, message: str) -> None:
    assert CLASSIFIER.classify({}, message) is expected


@pytest.mark.parametrize(("expected", "message"), REAL_MESSAGES[:10])
def test_inside_non_ascii_text(expected: ErrorType, message: str) -> None:
    wrapped = f"定时任务 自动导入 失败 — ошибка: {message} (задача №7) ✗"
    assert CLASSIFIER.classify({}, wrapped) is expected


def test_case_and_full_width_letters_fold() -> None:
    assert CLASSIFIER.classify({}, "CONNECTION REFUSED") is ErrorType.DB_UNREACHABLE
    assert CLASSIFIER.classify({}, "ＳＩＧＫＩＬＬ received") is ErrorType.OOM


def test_explicit_label_wins_over_alertname_and_text() -> None:
    labels = {"error_type": "disk_full", "alertname": "ContainerOOMKilled"}
    assert CLASSIFIER.classify(labels, "connection refused") is ErrorType.DISK_FULL


def test_alertname_mapping_beats_text() -> None:
    assert (
        CLASSIFIER.classify({"alertname": "ContainerOOMKilled"}, "connection refused")
        is ErrorType.OOM
    )


def test_unknown_explicit_label_falls_through() -> None:
    assert CLASSIFIER.classify({"error_type": "nonsense"}, "SIGKILL") is ErrorType.OOM


def test_nothing_matches_gives_unknown() -> None:
    assert CLASSIFIER.classify({"alertname": "Watchdog"}, "all good") is ErrorType.UNKNOWN


def test_bad_rule_file_names_field(tmp_path: Path) -> None:
    (tmp_path / "classifiers.yaml").write_text("rules:\n  - error_type: OOM\n    regex: ['(']\n")
    with pytest.raises(PlaybookError) as err:
        load_classifier(tmp_path)
    assert err.value.field == "rules.0.regex"
    (tmp_path / "classifiers.yaml").write_text("rules:\n  - error_type: NOPE\n    patterns: [x]\n")
    with pytest.raises(PlaybookError, match="rules.0.error_type"):
        load_classifier(tmp_path)
