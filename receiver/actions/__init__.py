"""The built-in actions: adding a kind is one module and one line here.

``ACTIONS`` is read-only: the app is handed its registry (``create_app(actions=...)``, which
the catalog validates playbooks against and the worker runs), so a test or an embedding adds
its own kinds by passing ``{**ACTIONS, ...}``, not by editing this one."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from receiver.actions.alert_only import AlertOnly
from receiver.actions.base import Action, ActionContext, ActionOutcome, ActionParams
from receiver.actions.compose_restart import ComposeRestart
from receiver.actions.docker_restart import DockerRestart
from receiver.actions.docker_start import DockerStart
from receiver.actions.http import HTTPCall
from receiver.actions.ssh import SSHCommand
from receiver.actions.wait_retry import WaitRetry

ACTIONS: Mapping[str, Action] = MappingProxyType(
    {
        AlertOnly.kind: AlertOnly(),
        WaitRetry.kind: WaitRetry(),
        DockerRestart.kind: DockerRestart(),
        DockerStart.kind: DockerStart(),
        ComposeRestart.kind: ComposeRestart(),
        SSHCommand.kind: SSHCommand(),
        HTTPCall.kind: HTTPCall(),
    }
)

__all__ = ["ACTIONS", "Action", "ActionContext", "ActionOutcome", "ActionParams"]
