"""The heal worker: claims due incidents from the store in batches and moves each one on.

``loop`` claims, schedules and records; ``begin`` orders one lifecycle step for a batch of
claimed incidents, whose stages each have a module: ``verify`` (did the last repair hold?),
``plan`` (pure: which playbook, which parameters), ``approval`` and ``guards`` (may it run
now?); ``act`` runs an action and records a batch of outcomes; ``writes`` gathers a
transaction's writes and flushes them as a few multi-row statements.
"""

from receiver.worker.loop import HealWorker
from receiver.worker.plan import incident_signal

__all__ = ["HealWorker", "incident_signal"]
