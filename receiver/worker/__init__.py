"""The heal worker: claims due incidents from the store and moves each one step on.

``loop`` claims and schedules; ``step`` orders one lifecycle step, whose stages each have a
module: ``verify`` (did the last repair hold?), ``plan`` (pure: which playbook, which
parameters), ``guards`` (may it run now?), ``act`` (run it, record the outcome); ``records``
holds the writes they share.
"""

from receiver.worker.loop import HealWorker
from receiver.worker.plan import incident_signal

__all__ = ["HealWorker", "incident_signal"]
