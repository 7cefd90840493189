"""The consensus package keeps its promises: the names callers import, and arrows one way inside it.

`node.core.consensus` was one module; it is now a package of one module per
concern. Callers still write `from node.core.consensus import X`, so every
name the package lists must import from it; and its modules only stay
separable while they import each other in one direction (a cycle would make
them one module again in all but name). The cycle check is a small function
over `ast`, fed a synthetic cycle below so it cannot pass by reading nothing.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import node.core.consensus as consensus

PACKAGE = Path(consensus.__file__).parent


def test_every_listed_name_imports_from_the_package() -> None:
    missing = [name for name in consensus.__all__ if not hasattr(consensus, name)]
    assert not missing
    assert {"ConsensusMachine", "Decided", "Output", "Phase", "VoteSet", "CLOCK_PRECISION_MS"} <= set(
        consensus.__all__
    )


def test_the_package_holds_one_module_per_concern() -> None:
    modules = {path.stem for path in PACKAGE.glob("*.py")} - {"__init__"}
    assert modules == {"outputs", "votes", "gossip", "late", "catchup", "machine"}
    for name in modules:
        assert importlib.import_module(f"node.core.consensus.{name}").__doc__


def sibling_imports(package: str, sources: dict[str, str]) -> dict[str, set[str]]:
    """For each module of `package` (name -> source), the sibling modules it imports."""
    graph: dict[str, set[str]] = {}
    for name, source in sources.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(source)):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            found |= {n.split(".")[len(package.split("."))] for n in names if n.startswith(package + ".")}
        graph[name] = found & set(sources) - {name}
    return graph


def import_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle in the import graph, as the modules along it, or None when every arrow points one way."""
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> list[str] | None:
        if name in path:
            return [*path[path.index(name) :], name]
        if name in done:
            return None
        for other in sorted(graph[name]):
            cycle = visit(other, [*path, name])
            if cycle is not None:
                return cycle
        done.add(name)
        return None

    for name in sorted(graph):
        cycle = visit(name, [])
        if cycle is not None:
            return cycle
    return None


def test_the_consensus_modules_import_each_other_one_way() -> None:
    sources = {p.stem: p.read_text() for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    graph = sibling_imports("node.core.consensus", sources)
    assert graph["machine"] >= {"outputs", "votes", "gossip", "late", "catchup"}
    assert import_cycle(graph) is None, import_cycle(graph)


def test_the_cycle_check_finds_a_cycle() -> None:
    sources = {
        "a": "from pkg.b import x\n",
        "b": "import pkg.c\n",
        "c": "from pkg.a import y\n",
        "d": "from pkg.a import y\n",
    }
    graph = sibling_imports("pkg", sources)
    assert graph == {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert import_cycle(graph) == ["a", "b", "c", "a"]
    assert import_cycle({**graph, "c": set()}) is None
