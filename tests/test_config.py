from __future__ import annotations

import base64
from pathlib import Path

import pytest

from receiver.auth import authorized
from receiver.config import load_settings
from receiver.errors import ConfigError


def test_environment_beats_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "autoheal.yaml"
    cfg.write_text("listen: 127.0.0.1:9100\ndry_run: true\nworker_concurrency: 3\n")
    monkeypatch.setenv("AUTOHEAL_LISTEN", "127.0.0.1:9200")
    settings = load_settings(cfg)
    assert settings.port == 9200
    assert settings.dry_run is True
    assert settings.worker_concurrency == 3


@pytest.mark.parametrize(
    ("key", "value", "needle"),
    [
        ("AUTOHEAL_LISTEN", "nonsense", "host:port"),
        ("AUTOHEAL_BASIC_AUTH", "nocolon", "user:password"),
        ("AUTOHEAL_WORKER_CONCURRENCY", "0", "worker_concurrency"),
        ("AUTOHEAL_DRY_RUN", "maybe", "dry_run"),
        ("AUTOHEAL_NO_SUCH_SETTING", "1", None),
    ],
)
def test_bad_settings_are_named(
    monkeypatch: pytest.MonkeyPatch, key: str, value: str, needle: str | None
) -> None:
    monkeypatch.setenv(key, value)
    if needle is None:
        load_settings()  # unknown env vars are not ours to judge
        return
    with pytest.raises(ConfigError, match=needle):
        load_settings()


def test_unknown_key_in_file_is_an_error(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("lisen: 1\n")
    with pytest.raises(ConfigError, match="lisen"):
        load_settings(cfg)


def test_refuses_public_listen_without_credentials() -> None:
    with pytest.raises(ConfigError, match="without credentials"):
        load_settings(listen="0.0.0.0:9095").check_exposure()
    load_settings(listen="127.0.0.1:9095").check_exposure()
    load_settings(listen="[::1]:9095").check_exposure()
    load_settings(listen="0.0.0.0:9095", auth_token="t").check_exposure()


def test_secret_from_file_and_never_in_repr(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("s3cr3t\n")
    settings = load_settings(auth_token_file=secret)
    assert settings.auth_token is not None
    assert settings.auth_token.get_secret_value() == "s3cr3t"
    assert "s3cr3t" not in repr(settings)


def basic(user_pass: str) -> str:
    return "Basic " + base64.b64encode(user_pass.encode()).decode()


def test_authorization_header_forms() -> None:
    s = load_settings(auth_token="tok", basic_auth="am:pw")
    assert authorized(s, "Bearer tok")
    assert authorized(s, "bearer tok")
    assert authorized(s, basic("am:pw"))
    assert not authorized(s, "Bearer tok2")
    assert not authorized(s, basic("am:pw2"))
    assert not authorized(s, "Basic !!!notbase64")
    assert not authorized(s, None)
    assert not authorized(s, "tok")
    assert authorized(load_settings(), None)  # loopback dev mode: no credentials configured


def test_blocked_by_needs_alertmanager_and_valid_matchers() -> None:
    from receiver.errors import PlaybookError
    from receiver.playbooks import parse_playbooks

    with pytest.raises(ConfigError, match="blocked_by needs alertmanager_url"):
        load_settings(None, environ={}, blocked_by=['alertname="Deploy"'])
    with pytest.raises(ConfigError, match="blocked_by.0: not a matcher"):
        load_settings(None, environ={}, blocked_by=["alertname=="], alertmanager_url="http://a")
    settings = load_settings(
        None, environ={}, blocked_by=['alertname=~"Deploy.*"'], alertmanager_url="http://a"
    )
    assert [str(m) for m in settings.blocked_matchers] == ['alertname=~"Deploy.*"']
    text = (
        "playbooks:\n  - name: p\n    error_type: OOM\n"
        "    action: {type: alert_only, params: {message: x}}\n"
        "    blocked_by: ['alertname=~\"Deploy.*\"']\n"
    )
    with pytest.raises(PlaybookError, match="needs alertmanager_url"):
        parse_playbooks(text, "p.yaml", load_settings(None, environ={}).param_scope())
    (playbook,) = parse_playbooks(text, "p.yaml", settings.param_scope())
    assert [str(m) for m in playbook.brakes.blocked_by] == ['alertname=~"Deploy.*"']


def test_fleet_query_needs_prometheus_and_a_fraction() -> None:
    from receiver.errors import PlaybookError
    from receiver.playbooks import parse_playbooks

    base = (
        "playbooks:\n  - name: p\n    error_type: OOM\n"
        "    action: {type: alert_only, params: {message: x}}\n"
    )
    with_query = base + "    fleet_query: 'count(up)'\n    max_fleet_fraction: 0.5\n"
    without = load_settings(None, environ={}).param_scope()
    with pytest.raises(PlaybookError, match="needs prometheus_url"):
        parse_playbooks(with_query, "p.yaml", without)
    scope = load_settings(None, environ={}, prometheus_url="http://p:9090").param_scope()
    (playbook,) = parse_playbooks(with_query, "p.yaml", scope)
    assert playbook.brakes.limits_targets and playbook.brakes.max_fleet_fraction == 0.5
    with pytest.raises(PlaybookError, match="go together"):
        parse_playbooks(base + "    fleet_query: 'count(up)'\n", "p.yaml", scope)
    with pytest.raises(ConfigError, match="prometheus_url must be an http"):
        load_settings(None, environ={}, prometheus_url="p:9090")
