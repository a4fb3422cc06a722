"""Settings, one group of them per module, inherited into one flat ``Settings`` (names as
the environment, ``AUTOHEAL_*``, and the YAML file spell them):

- ``access``: where autoheal listens, credentials, request limits, the failed-login
  throttle, how people reach it;
- ``notify``: Telegram, the webhook channel, approval buttons, escalations to Alertmanager;
- ``brakes``: maintenance windows, quarantine, blocking alerts, re-check, evidence;
- ``settings``: ``Settings`` itself (the store, the worker, hosts and commands, retention,
  the log), the checks across groups, and ``load_settings``.
"""

from receiver.config.settings import ENV_PREFIX, Settings, default_playbooks_dir, load_settings

__all__ = ["ENV_PREFIX", "Settings", "default_playbooks_dir", "load_settings"]
