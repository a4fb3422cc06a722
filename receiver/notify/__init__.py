"""Notifications: the outbox sender and the channels it delivers through.

Adding a channel = one module with a ``Notifier`` and one line in ``NOTIFIERS``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from receiver.config import Settings
from receiver.notify.base import Notice, Notifier, NotifyError
from receiver.notify.notices import Announcer
from receiver.notify.telegram import TelegramNotifier
from receiver.notify.webhook import WebhookNotifier


def _telegram(s: Settings) -> Notifier:
    assert s.telegram_token is not None and s.telegram_chat_id is not None
    return TelegramNotifier(
        s.telegram_token.get_secret_value(),
        s.telegram_chat_id,
        s.telegram_base_url,
        s.notify_timeout_seconds,
    )


def _webhook(s: Settings) -> Notifier:
    assert s.notify_webhook_url is not None
    token = s.notify_webhook_token.get_secret_value() if s.notify_webhook_token else None
    return WebhookNotifier(s.notify_webhook_url, token, s.notify_timeout_seconds)


NOTIFIERS: dict[str, Callable[[Settings], Notifier]] = {
    "telegram": _telegram,
    "webhook": _webhook,
}


def announcer(settings: Settings) -> Announcer:
    """What the writers of outcomes announce them with (an outbox row per channel)."""
    return Announcer(settings.channels, settings.incident_base_url, settings.notify_healing)


def build_notifiers(
    settings: Settings, channels: Mapping[str, Callable[[Settings], Notifier]] = NOTIFIERS
) -> dict[str, Notifier]:
    """One notifier per configured channel (``settings.channels``), each made by its
    entry in ``channels`` (the app's registry: the built-in ``NOTIFIERS`` unless given)."""
    return {name: channels[name](settings) for name in settings.channels}


__all__ = [
    "NOTIFIERS",
    "Announcer",
    "Notice",
    "Notifier",
    "NotifyError",
    "announcer",
    "build_notifiers",
]
