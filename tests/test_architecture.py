"""The layering of ARCHITECTURE.md, checked on the source: imports point one way (no cycle, not
even one hidden by an import inside a function), services never reach up into an interface, no
`except ImportError` hides a broken project import, and benchmarks stay out of the services.

Each rule is a small function over module sources, tested first on a fake source or graph that
breaks it, so a check that can no longer fail is noticed.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import pytest

import workbench

PACKAGE_ROOT = Path(workbench.__file__).parent
INTERFACE_LIBRARIES = ("streamlit", "typer", "click", "fastapi", "starlette")
INTERFACE_PACKAGES = ("workbench.cli", "workbench.ui", "workbench.api", "workbench.bench")
LOWER_LAYERS = ("workbench.services", "workbench.encoders", "workbench.db")
IMPORT_ERRORS = {"ImportError", "ModuleNotFoundError"}


# ---- reading the tree ------------------------------------------------------------------------


def project_modules(root: Path = PACKAGE_ROOT) -> dict[str, tuple[str, bool]]:
    """Dotted module name -> (source, is a package) for every module of the `workbench` tree."""
    out: dict[str, tuple[str, bool]] = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        out[".".join(parts)] = (path.read_text(encoding="utf-8"), is_package)
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _statements(body: Iterable[ast.stmt], *, nested: bool) -> Iterator[ast.stmt]:
    """Statements run when the module is imported (with `nested`, also those inside functions),
    leaving out `if TYPE_CHECKING:` blocks, which never run."""
    for node in body:
        yield node
        if isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                yield from _statements(node.body, nested=nested)
            yield from _statements(node.orelse, nested=nested)
        elif isinstance(node, ast.Try | ast.TryStar):
            for block in (node.body, node.orelse, node.finalbody):
                yield from _statements(block, nested=nested)
            for handler in node.handlers:
                yield from _statements(handler.body, nested=nested)
        elif isinstance(node, ast.With | ast.AsyncWith | ast.For | ast.AsyncFor | ast.While):
            yield from _statements(node.body, nested=nested)
            yield from _statements(getattr(node, "orelse", []), nested=nested)
        elif isinstance(node, ast.ClassDef):
            yield from _statements(node.body, nested=nested)  # a class body runs at import
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and nested:
            yield from _statements(node.body, nested=nested)


def imported_names(module: str, is_package: bool, source: str, *, nested: bool) -> set[str]:
    """Every dotted name the module imports (`from a import b` gives `a.b`, whether b is a
    submodule or an attribute), relative imports resolved; only module-level imports unless
    `nested`."""
    package = module if is_package else module.rpartition(".")[0]
    names: set[str] = set()
    for node in _statements(ast.parse(source).body, nested=nested):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def import_graph(
    modules: Mapping[str, tuple[str, bool]], *, nested: bool = False
) -> dict[str, set[str]]:
    """Module -> the project modules it imports. A name resolves to its longest known prefix:
    `from workbench.x import function` is an edge to `workbench.x`, `from workbench.x import
    submodule` one to the submodule only (the package is its parent, already imported)."""

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for module, (source, is_package) in modules.items():
        targets = {resolve(n) for n in imported_names(module, is_package, source, nested=nested)}
        graph[module] = {t for t in targets if t is not None and t != module}
    return graph


def find_cycle(graph: Mapping[str, Iterable[str]]) -> list[str] | None:
    """One cycle as a path that ends where it starts (`[a, b, a]`), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)) is not None:
            return found
    return None


def _under(name: str, prefixes: Iterable[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def interface_imports(modules: Mapping[str, tuple[str, bool]]) -> list[str]:
    """`module -> name` for every import of an interface by a service, encoder or db module,
    inside functions too (a deferred import of streamlit is still a dependency on it)."""
    found = []
    for module, (source, is_package) in sorted(modules.items()):
        if not _under(module, LOWER_LAYERS):
            continue
        for name in sorted(imported_names(module, is_package, source, nested=True)):
            if _under(name, INTERFACE_LIBRARIES) or _under(name, INTERFACE_PACKAGES):
                found.append(f"{module} -> {name}")
    return found


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    caught = handler.type
    types = caught.elts if isinstance(caught, ast.Tuple) else [caught] if caught else []
    return any(
        (isinstance(t, ast.Name) and t.id in IMPORT_ERRORS)
        or (isinstance(t, ast.Attribute) and t.attr in IMPORT_ERRORS)
        for t in types
    )


def import_error_guards(modules: Mapping[str, tuple[str, bool]]) -> list[str]:
    """`module:line` of every `try` whose body imports a project module and whose handler
    catches ImportError: it turns a broken install or a cycle into a silent fallback."""
    found = []
    for module, (source, _) in sorted(modules.items()):
        for node in ast.walk(ast.parse(source)):
            if not isinstance(node, ast.Try | ast.TryStar):
                continue
            if not any(_catches_import_error(h) for h in node.handlers):
                continue
            for stmt in node.body:
                for inner in ast.walk(stmt):
                    if (
                        isinstance(inner, ast.Import)
                        and any(_under(a.name, ["workbench"]) for a in inner.names)
                    ) or (
                        isinstance(inner, ast.ImportFrom)
                        and (inner.level > 0 or _under(inner.module or "", ["workbench"]))
                    ):
                        found.append(f"{module}:{inner.lineno}")
    return found


def benchmark_services(modules: Iterable[str]) -> list[str]:
    """Service modules named after benchmarks: benchmarks live in workbench/bench."""
    prefix = "workbench.services."
    return [m for m in sorted(modules) if m.startswith(prefix) and "bench" in m[len(prefix) :]]


# ---- the checks can fail ---------------------------------------------------------------------


def _fake(**sources: str) -> dict[str, tuple[str, bool]]:
    return {name.replace("__", "."): (src, False) for name, src in sources.items()}


def test_a_cycle_is_found_and_printed_as_a_path() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_module_level_imports_count_and_type_checking_or_function_imports_do_not() -> None:
    modules = _fake(
        workbench__a="import os\nfrom workbench import b\n",
        workbench__b=(
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from workbench.a import x\n"
            "def f():\n    from workbench.c import y\n"
        ),
        workbench__c="try:\n    from .a import z\nexcept KeyError:\n    pass\n",
    )
    graph = import_graph(modules)
    assert graph == {"workbench.a": {"workbench.b"}, "workbench.b": set(), "workbench.c": {
        "workbench.a"}}  # fmt: skip
    assert find_cycle(graph) is None
    # Counting the import inside the function closes a -> b -> c -> a.
    assert find_cycle(import_graph(modules, nested=True)) == [
        "workbench.a", "workbench.b", "workbench.c", "workbench.a"]  # fmt: skip


def test_an_interface_import_in_a_service_is_found() -> None:
    modules = _fake(
        workbench__services__x="import numpy\ndef f():\n    import streamlit as st\n",
        workbench__db__y="from workbench.cli._common import say\n",
        workbench__encoders__z="from workbench.bench import results\n",
        workbench__cli__ok="import typer\n",
    )
    assert interface_imports(modules) == [
        "workbench.db.y -> workbench.cli._common.say",
        "workbench.encoders.z -> workbench.bench.results",
        "workbench.services.x -> streamlit",
    ]


def test_an_import_error_guard_around_a_project_import_is_found() -> None:
    modules = _fake(
        workbench__a=(
            "try:\n    import fcntl\nexcept ImportError:\n    fcntl = None\n"
            "def f():\n"
            "    try:\n        from workbench.services import x\n"
            "    except (ValueError, ModuleNotFoundError):\n        pass\n"
        ),
        workbench__b="try:\n    from . import c\nexcept ImportError:\n    c = None\n",
        workbench__c="try:\n    from workbench import d\nexcept KeyError:\n    pass\n",
    )
    assert import_error_guards(modules) == ["workbench.a:7", "workbench.b:2"]


def test_a_benchmark_module_among_the_services_is_found() -> None:
    names = ["workbench.services.queue.lease", "workbench.services.queue_bench", "workbench.bench"]
    assert benchmark_services(names) == ["workbench.services.queue_bench"]


# ---- the tree --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tree() -> dict[str, tuple[str, bool]]:
    return project_modules()


def test_the_tree_is_read(tree: dict[str, tuple[str, bool]]) -> None:
    # A wrong root would make every check below pass on nothing.
    assert {"workbench.services.select.batch", "workbench.cli", "workbench.db.models"} <= set(tree)


def test_module_level_imports_form_no_cycle(tree: dict[str, tuple[str, bool]]) -> None:
    cycle = find_cycle(import_graph(tree))
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_cycle_hides_behind_an_import_inside_a_function(
    tree: dict[str, tuple[str, bool]],
) -> None:
    # An import moved into a function to dodge a cycle keeps the cycle; only the start-up
    # cost of heavy third-party libraries is a reason to defer an import.
    cycle = find_cycle(import_graph(tree, nested=True))
    assert cycle is None, "import cycle (through a deferred import): " + " -> ".join(cycle or [])


def test_services_encoders_and_db_import_no_interface(tree: dict[str, tuple[str, bool]]) -> None:
    assert interface_imports(tree) == []


def test_no_import_error_handler_hides_a_project_import(tree: dict[str, tuple[str, bool]]) -> None:
    assert import_error_guards(tree) == []


def test_no_benchmark_module_lives_among_the_services(tree: dict[str, tuple[str, bool]]) -> None:
    assert benchmark_services(tree) == []
