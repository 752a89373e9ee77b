"""The dependency rules of docs/architecture.md, checked on the source with ``ast`` (every
``import``, including those inside functions and under ``TYPE_CHECKING``)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OURS = ("events", "tracker", "alerts", "web", "bench", "tests", "migrations")

#: the alert side's two edge modules: its CLI commands and its composition root
ALERT_EDGES = {"alerts.cli", "alerts.wiring"}
#: what the rest of ``alerts`` must not import (the write/entry side of ``tracker``)
TRACKER_ENTRY_SIDE = ("tracker.bootstrap", "tracker.settings", "tracker.cli", "tracker.errors")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> Iterator[tuple[int, str]]:
    package = module_name(path) if path.name == "__init__.py" \
        else module_name(path).rpartition(".")[0]
    return imports_in(path.read_text(encoding="utf-8"), package)


def imports_in(source: str, package: str) -> Iterator[tuple[int, str]]:
    """(line, imported module) for every import in ``source`` (a module of ``package``);
    ``from a import b`` yields ``a.b`` as well as ``a`` (``b`` may be a submodule)."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield node.lineno, base
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def top(name: str) -> str:
    return name.split(".")[0]


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def violations(package: str, allowed: set[str], exceptions: dict[str, set[str]]
               ) -> list[str]:
    out = []
    for path in modules(package):
        me = module_name(path)
        for line, name in imports_of(path):
            if top(name) not in OURS or top(name) == package or top(name) in allowed:
                continue
            if any(within(name, ok) for ok in exceptions.get(me, set())):
                continue
            out.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    return sorted(set(out))


def test_events_imports_nothing_of_ours() -> None:
    assert violations("events", set(), {}) == []


def test_tracker_imports_only_events_except_the_cli_mounting_the_alert_commands() -> None:
    mounted = {"tracker.cli.main": {"alerts.cli", "web.cli"}}
    assert violations("tracker", {"events"}, mounted) == []


def test_web_imports_only_events_tracker_and_alerts() -> None:
    assert violations("web", {"events", "tracker", "alerts"}, {}) == []


def test_alerts_imports_only_events_and_tracker() -> None:
    assert violations("alerts", {"events", "tracker"}, {}) == []


def test_alerts_core_uses_only_the_read_side_of_tracker() -> None:
    found = []
    for path in modules("alerts"):
        me = module_name(path)
        if me in ALERT_EDGES:
            continue
        for line, name in imports_of(path):
            if any(within(name, bad) for bad in TRACKER_ENTRY_SIDE):
                found.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
            if any(within(name, edge) for edge in ALERT_EDGES):
                found.append(f"{path.relative_to(ROOT)}:{line} imports the edge {name}")
    assert sorted(set(found)) == []


def test_the_alert_package_has_no_import_cycle() -> None:
    graph: dict[str, set[str]] = {}
    names = {module_name(p) for p in modules("alerts")}
    for path in modules("alerts"):
        graph[module_name(path)] = {n for _, n in imports_of(path) if n in names
                                    and n != module_name(path)}
    # a package's __init__ re-exporting its modules is not a cycle of concern
    for name in list(graph):
        graph[name] = {n for n in graph[name] if not name.startswith(n + ".")}

    def cycle_from(start: str) -> list[str] | None:
        stack: list[tuple[str, list[str]]] = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for nxt in graph.get(node, ()):
                if nxt == start:
                    return [*path, start]
                if nxt not in path:
                    stack.append((nxt, [*path, nxt]))
        return None

    cycles = [c for c in (cycle_from(n) for n in sorted(graph)) if c]
    assert cycles == []


def test_there_is_one_worker_entry_point() -> None:
    worker = (ROOT / "alerts" / "worker.py").read_text(encoding="utf-8")
    assert "argparse" not in worker and "__main__" not in worker


@pytest.mark.parametrize("source", [
    "import tracker.settings\n",
    "from tracker.cli.common import State\n",
    "from tracker import errors\n",
    "from .wiring import build_worker\n",
    "def f() -> None:\n    from alerts import cli\n",
])
def test_the_checker_sees_a_forbidden_import(source: str) -> None:
    # the rules above are only as good as the parser: prove it catches each form
    names = [n for _, n in imports_in(source, "alerts")]
    assert any(any(within(n, bad) for bad in (*TRACKER_ENTRY_SIDE, *ALERT_EDGES))
               for n in names)
