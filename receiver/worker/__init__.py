"""The heal worker: claims due incidents from the store in batches and moves each one on.

In the order a claimed incident passes through them: ``loop`` claims, schedules and
records; ``begin`` is one transaction for a batch of claimed incidents; ``plan`` (pure)
picks the playbook and fills its parameters; ``decide`` (pure) applies every rule to values
(``decisions``) and returns what happens next; ``apply`` turns decisions into the writes
that ``writes`` gathers and flushes as a few multi-row statements; ``act`` runs an action
outside any transaction and records a batch of outcomes the same way.
"""

from receiver.worker.loop import HealWorker
from receiver.worker.plan import incident_signal

__all__ = ["HealWorker", "incident_signal"]
