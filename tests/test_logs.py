"""The one log handler: every record, whichever logger wrote it, leaves without a secret."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from receiver import logs
from receiver.config import load_settings


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def test_settings_name_every_secret_and_the_forms_they_travel_in() -> None:
    settings = load_settings(
        None,
        auth_token="tok-1234567",
        basic_auth="am:pw-secret",
        telegram_token="1:tg-secret",
        telegram_chat_id="5",
        alertmanager_token="am-secret-9",
        notify_webhook_token="hook-secret",
        telegram_webhook_secret="tg-hook-secret",
        database_url="postgresql+asyncpg://u:db-secret@127.0.0.1/x",
    )
    found = set(settings.secrets())
    assert {"tok-1234567", "am:pw-secret", "pw-secret", "YW06cHctc2VjcmV0", "1:tg-secret"} <= found
    assert {"am-secret-9", "hook-secret", "tg-hook-secret", "db-secret"} <= found


@pytest.mark.parametrize("style", logs.FORMATS)
def test_any_logger_any_format_is_redacted(restore_root: None, style: str) -> None:
    out = io.StringIO()
    logs.configure("INFO", style, ["tok-1234567"], stream=out)
    try:
        raise ValueError("header b'Bearer tok-1234567\\x01' refused")
    except ValueError:
        logging.getLogger("aiohttp.server").exception("Error %s", "tok-1234567")
    logging.getLogger("some.library").warning("Authorization: Basic c29tZW9uZTplbHNl and more")
    logging.getLogger("receiver.x").info("token=%s", "other-token-xyz", extra={"incident": 7})
    text = out.getvalue()
    assert "tok-1234567" not in text and "c29tZW9uZTplbHNl" not in text, text
    assert text.count(logs.REDACTED) >= 3
    assert "incident" in text
    if style == "json":
        lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
        assert lines[-1]["incident"] == 7 and lines[-1]["level"] == "info"


def test_protocol_errors_become_one_short_line(restore_root: None) -> None:
    from aiohttp.http_exceptions import BadHttpMessage

    out = io.StringIO()
    logs.configure("INFO", "text", [], stream=out)
    try:
        raise BadHttpMessage("Invalid header value char: b'Bearer abc\\x01'")
    except BadHttpMessage as exc:
        logging.getLogger("aiohttp.server").exception(
            "Error handling request from %s", "1.2.3.4", exc_info=exc
        )
    (line,) = out.getvalue().splitlines()
    assert "WARNING" in line and "BadHttpMessage (400)" in line and "abc" not in line
