"""Telling people: the Telegram and webhook channels, approval buttons, and escalations
handed back to Alertmanager."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from receiver.config.base import Group, http_url


class NotifySettings(Group):
    # Notification channels; each is on when its settings are given (see README, Notify).
    telegram_token: SecretStr | None = None
    telegram_token_file: Path | None = None
    telegram_chat_id: str | None = None
    telegram_base_url: str = "https://api.telegram.org"
    # Approval buttons: Telegram posts button presses to /api/v1/telegram/updates with this
    # secret (setWebhook's secret_token); only these user ids (comma-separated) may decide.
    telegram_webhook_secret: SecretStr | None = None
    telegram_webhook_secret_file: Path | None = None
    telegram_approvers: str = ""
    notify_webhook_url: str | None = None
    notify_webhook_token: SecretStr | None = None
    notify_webhook_token_file: Path | None = None
    notify_healing: bool = False  # also tell when a repair starts
    notify_batch_seconds: float = Field(default=2.0, gt=0)  # how long notices gather
    notify_summary_after: int = Field(default=5, ge=2)  # this many in a batch: one summary
    notify_timeout_seconds: float = Field(default=10.0, gt=0)
    # Escalations handed back to Alertmanager as AutoHealEscalated alerts (comma-separated
    # URLs: every peer of an HA cluster, as Alertmanager's clients should).
    alertmanager_url: str | None = None
    alertmanager_token: SecretStr | None = None
    alertmanager_token_file: Path | None = None
    alertmanager_repost_seconds: float = Field(default=60.0, gt=0)

    def _check_notify(self) -> None:
        """Once the secret files are read (a token may come from one)."""
        if (self.telegram_token is None) != (self.telegram_chat_id is None):
            raise ValueError("telegram needs both telegram_token (or _file) and telegram_chat_id")
        http_url("telegram_base_url", self.telegram_base_url)
        http_url("notify_webhook_url", self.notify_webhook_url)
        if any(
            not part.strip().lstrip("-").isdigit()
            for part in self.telegram_approvers.split(",")
            if part.strip()
        ):
            raise ValueError("telegram_approvers must be comma-separated Telegram user ids")
        for url in self.alertmanager_urls:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"alertmanager_url: {url!r} is not an http(s) URL")

    @property
    def alertmanager_urls(self) -> tuple[str, ...]:
        if not self.alertmanager_url:
            return ()
        return tuple(u.strip().rstrip("/") for u in self.alertmanager_url.split(",") if u.strip())

    @property
    def approver_ids(self) -> frozenset[int]:
        return frozenset(int(p) for p in self.telegram_approvers.split(",") if p.strip())

    @property
    def channels(self) -> tuple[str, ...]:
        """The notification channels that are configured, in a fixed order."""
        on = {"telegram": self.telegram_token is not None, "webhook": bool(self.notify_webhook_url)}
        return tuple(name for name, enabled in on.items() if enabled)
