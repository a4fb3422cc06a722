"""Plain-language lines shared by the channels' formats."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from receiver.domain import EscalationReason, NoticeEvent
from receiver.notify.base import Notice, reason_words

HEADLINES: dict[str, str] = {  # by NoticeEvent (a StrEnum: the stored string finds it)
    NoticeEvent.ESCALATED: "Escalated",
    NoticeEvent.RESOLVED: "Healed",
    NoticeEvent.HEALING: "Healing",
    NoticeEvent.APPROVAL: "Approval needed",
    NoticeEvent.PAUSED: "autoheal paused",
    NoticeEvent.RESUMED: "autoheal resumed",
}


def headline(n: Notice) -> str:
    if not n.incident_id:  # about autoheal itself (paused, resumed): the message says it
        return HEADLINES.get(n.event, n.event)
    return f"{HEADLINES.get(n.event, n.event)}: {n.task_name} ({n.error_type}, {n.severity})"


def facts(n: Notice) -> list[str]:
    """Lines saying what happened, what was done and the result."""
    if n.event == NoticeEvent.APPROVAL:
        lines = [f"Wants to run: {n.action}" if n.action else "Wants to run a repair"]
        if n.playbook:
            lines.append(f"Playbook: {n.playbook}" + (f" on {n.target}" if n.target else ""))
        if n.approval_deadline:
            lines.append(f"Decide by {n.approval_deadline} (else it escalates)")
        return lines
    lines = []
    if n.event == NoticeEvent.ESCALATED and n.reason:
        lines.append(f"Why: {reason_words(n.reason)}")
    # alert_only's action is its message, which the note already carries: said once.
    if n.action and n.reason != EscalationReason.ALERT_ONLY:
        done = f"Done: {n.action}"
        if n.result:
            done += f" → {n.result}"
        if n.attempts > 1:
            done += f" (attempt {n.attempts})"
        lines.append(done)
    if n.playbook:
        lines.append(f"Playbook: {n.playbook}" + (f" on {n.target}" if n.target else ""))
    if n.evidence and n.event == NoticeEvent.ESCALATED:
        lines.append(f"Before the repair: {n.evidence}")
    if n.time_to_heal_seconds is not None:
        lines.append(f"Healed in {n.time_to_heal_seconds:.0f} s")
    return lines


def summary_line(notices: Sequence[Notice]) -> str:
    """``12 escalated (10 no_playbook, 2 not_healed), 3 healed``."""
    parts = []
    for event, count in Counter(n.event for n in notices).items():
        part = f"{count} {HEADLINES.get(event, event).lower()}"
        reasons = Counter(n.reason for n in notices if n.event == event and n.reason)
        if reasons:
            part += " (" + ", ".join(f"{c} {r}" for r, c in reasons.most_common()) + ")"
        parts.append(part)
    return ", ".join(parts)
