"""The loaded playbooks, classifier and declared tasks, swapped as a whole on reload."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from receiver.actions import ACTIONS, Action
from receiver.classify import Classifier, load_classifier
from receiver.db import repo
from receiver.db.engine import Database
from receiver.playbooks import Playbook, load_playbooks
from receiver.tasks import Task, load_tasks


@dataclass(frozen=True, slots=True)
class Catalog:
    playbooks: tuple[Playbook, ...]
    classifier: Classifier
    ids: Mapping[str, int]  # playbook name -> row id
    names: Mapping[int, str]  # row id -> playbook name (metrics label incidents by playbook)
    tasks: tuple[Task, ...] = ()  # tasks.yaml: runs autoheal expects to hear of


def load_files(
    directory: Path,
    scope: Mapping[str, Any] | None = None,
    actions: Mapping[str, Action] = ACTIONS,
) -> tuple[list[Playbook], Classifier]:
    """Read and validate; raises PlaybookError naming file, playbook and field."""
    return load_playbooks(directory, scope, actions), load_classifier(directory)


async def load_catalog(
    db: Database,
    directory: Path,
    scope: Mapping[str, Any] | None = None,
    actions: Mapping[str, Action] = ACTIONS,
) -> Catalog:
    """Validate the YAML, then sync it into the store: playbooks (stats survive) and the
    declared tasks (each expected from the first load that named it)."""
    playbooks, classifier = load_files(directory, scope, actions)
    tasks = load_tasks(directory)
    now = datetime.now(UTC)
    async with db.transaction() as conn:
        ids = await repo.sync_playbooks(conn, playbooks, now)
        await repo.task_runs.declare(conn, [t.name for t in tasks], now)
    return Catalog(tuple(playbooks), classifier, ids, {i: n for n, i in ids.items()}, tasks)


class CatalogHolder:
    """The current catalog; readers take ``current`` once per unit of work."""

    def __init__(self, catalog: Catalog) -> None:
        self.current = catalog
