"""The package rules of docs/architecture.md that code can check: no import cycles among
the project's modules.

Every import counts: at module level, inside functions, and under ``TYPE_CHECKING``
(an import moved into a function to dodge a cycle is still the cycle).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bearwatch", "ingest", "inference", "shadow", "dashboard")


def project_modules(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the project's packages."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _imported_names(tree: ast.AST, module: str, is_package: bool) -> Iterator[tuple[str, int]]:
    """(dotted name, line) of everything the module imports, anywhere in it; ``from a
    import b`` yields ``a`` and ``a.b`` (a submodule, or a name in ``a``)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = module.split(".") if is_package else module.split(".")[:-1]
                parent = parent[: len(parent) - (node.level - 1)]
                base = ".".join([*parent, base] if base else parent)
            yield base, node.lineno
            for alias in node.names:
                yield f"{base}.{alias.name}", node.lineno


def import_graph(root: Path = ROOT) -> dict[str, dict[str, int]]:
    """module -> {project module it imports: the first line that does}."""
    modules = project_modules(root)
    graph: dict[str, dict[str, int]] = {}
    for module, path in modules.items():
        edges: dict[str, int] = {}
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for name, line in _imported_names(tree, module, path.name == "__init__.py"):
            parts = name.split(".")
            for prefix in (".".join(parts[:n]) for n in range(1, len(parts) + 1)):  # importing a.b runs a first
                if prefix in modules and prefix != module:
                    edges.setdefault(prefix, line)
        graph[module] = edges
    return graph


def _reachable(graph: dict[str, dict[str, int]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for child in graph[todo.pop()]:
            if child not in seen:
                seen.add(child)
                todo.append(child)
    return seen


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One cycle (as a closed path) per group of modules that import each other, directly
    or not (a strongly connected component; the graph is small, so reachability will do)."""
    reach = {module: _reachable(graph, module) for module in graph}
    found: list[list[str]] = []
    seen: set[str] = set()
    for module in sorted(graph):
        if module in seen or module not in reach[module]:
            continue
        component = {other for other in reach[module] if module in reach[other]}
        seen |= component
        found.append(_closed_path(graph, component))
    return found


def _closed_path(graph: dict[str, dict[str, int]], component: set[str]) -> list[str]:
    """A shortest cycle through the component's first module, inside the component."""
    first = min(component)
    paths = {first: [first]}
    queue = [first]
    while queue:
        node = queue.pop(0)
        for child in sorted(graph[node]):
            if child == first:
                return [*paths[node], first]
            if child in component and child not in paths:
                paths[child] = [*paths[node], child]
                queue.append(child)
    raise AssertionError(f"no cycle through {first}")  # pragma: no cover - a component always has one


def describe(graph: dict[str, dict[str, int]], cycle: list[str]) -> str:
    return " -> ".join(
        f"{a} (line {graph[a][b]})" for a, b in zip(cycle, cycle[1:], strict=False)
    ) + f" -> {cycle[-1]}"


def test_the_project_has_no_import_cycles() -> None:
    graph = import_graph()
    assert len(graph) > 50, "the project's modules were not found"
    found = cycles(graph)
    assert not found, "import cycles (function-level imports count too):\n" + "\n".join(
        describe(graph, c) for c in found
    )


def test_the_cycle_finder_finds_a_cycle_hidden_in_a_function(tmp_path: Path) -> None:
    (tmp_path / "shadow").mkdir()
    (tmp_path / "shadow" / "__init__.py").write_text("")
    (tmp_path / "shadow" / "a.py").write_text("from shadow.b import f\n")
    (tmp_path / "shadow" / "b.py").write_text("def f():\n    from . import a\n    return a\n")
    (tmp_path / "shadow" / "c.py").write_text("import shadow.a\n")
    for package in PACKAGES[:-1]:
        (tmp_path / package).mkdir(exist_ok=True)
    graph = import_graph(tmp_path)
    assert graph["shadow.b"] == {"shadow": 2, "shadow.a": 2}
    assert cycles(graph) == [["shadow.a", "shadow.b", "shadow.a"]]
    assert describe(graph, cycles(graph)[0]) == "shadow.a (line 1) -> shadow.b (line 2) -> shadow.a"


# The shell: the CLI, the supervisor, the demo and applying the park file. It may import
# every part; nothing outside it imports it.
SHELL = (
    "bearwatch.__main__", "bearwatch.cli", "bearwatch.cli_common", "bearwatch.cli_docs", "bearwatch.commands",
    "bearwatch.dashboard_server", "bearwatch.demo", "bearwatch.park_apply", "bearwatch.supervisor",
)
# What each package may import besides itself (docs/architecture.md, "Package rules").
MAY_IMPORT = {
    "bearwatch": set(),  # the base: settings, database, schema, errors, auth, the park file, ...
    "ingest": {"bearwatch"},
    "inference": {"bearwatch"},
    "shadow": {"bearwatch", "inference"},
    "dashboard": {"bearwatch", "ingest", "inference", "shadow"},
}


def _in_shell(module: str) -> bool:
    return any(module == s or module.startswith(s + ".") for s in SHELL)


def layer_violations(graph: dict[str, dict[str, int]]) -> list[str]:
    found = []
    for module, edges in sorted(graph.items()):
        if _in_shell(module):
            continue
        package = module.split(".")[0]
        for target, line in sorted(edges.items()):
            if any(t.startswith(target + ".") for t in edges):
                continue  # a package that is imported for one of its modules: that module is named
            other = target.split(".")[0]
            if _in_shell(target) or (other != package and other not in MAY_IMPORT[package]):
                found.append(f"{module} (line {line}) imports {target}")
    return found


def test_each_package_imports_only_what_the_rules_allow() -> None:
    found = layer_violations(import_graph())
    assert not found, "imports against the package rules of docs/architecture.md:\n" + "\n".join(found)


def test_the_layer_check_flags_a_part_importing_another_or_the_shell() -> None:
    graph = {"ingest.a": {"shadow.b": 3, "bearwatch.db": 1}, "shadow.b": {"bearwatch.cli": 7},
             "bearwatch.cli": {"shadow.b": 1}, "bearwatch.db": {}}
    assert layer_violations(graph) == ["ingest.a (line 3) imports shadow.b", "shadow.b (line 7) imports bearwatch.cli"]
