"""The import graph keeps its layers: the store knows nothing above it.

``db/`` may import the domain's values and pure helpers, never what uses the store (the
worker, notifications, the API) nor what acts on the world (actions): a change up there then
cannot break, or slow, the store's code. Read from the source, so it runs without importing.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "receiver"
# What db/ may reach, directly or through what it imports: values and pure functions.
BENEATH_THE_STORE = {
    "receiver.domain",
    "receiver.errors",
    "receiver.jsoncodec",
    "receiver.knowledge",
    "receiver.textmatch",
}


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                deps.add(node.module)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
        graph[module] = {d for d in deps if d.split(".")[0] == "receiver"}
    return graph


def test_the_store_imports_nothing_above_it() -> None:
    graph = _graph()
    reached: set[str] = set()
    todo = [m for m in graph if m.startswith("receiver.db")]
    while todo:
        module = todo.pop()
        if module not in reached:
            reached.add(module)
            todo.extend(graph.get(module, ()))
    above = sorted(m for m in reached if not m.startswith("receiver.db"))
    assert set(above) <= BENEATH_THE_STORE, above


def test_the_rules_decide_without_io() -> None:
    # decide.py and decisions.py read values only: no store, no clock, no network.
    graph = _graph()
    for module in ("receiver.worker.decide", "receiver.worker.decisions"):
        io = {d for d in graph[module] if d.startswith(("receiver.db", "receiver.actions."))}
        assert not io, (module, io)
