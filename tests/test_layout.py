"""The tree's layout rules, for ``landscape/`` and ``cli/`` alike.

* No function's body grows past 80 lines (the docstring does not count: the maths and the paper belong
  there; nor does the signature, which for a command is its option list): a longer one is split into
  named steps with one job each.
* No import cycle between the library's packages, counting every import: module level, inside
  functions and under ``TYPE_CHECKING``. A loose top-level module counts as a package of its own.
* The top of ``landscape/`` keeps infrastructure only: at most six loose modules besides
  ``__init__`` and ``__main__``.
* A package's modules are never shadowed by the functions it exports.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import textwrap
from collections import defaultdict
from pathlib import Path

import pytest

import landscape

MAX_BODY_LINES = 80
PACKAGE = Path(landscape.__file__).parent
CLI = PACKAGE.parent / "cli"
INFRASTRUCTURE = {"errors", "device", "seeding", "progress", "distributed", "threads"}


def body_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines from the first statement of the body to its end, less a leading docstring."""
    body = node.body
    first = body[0]
    if (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    ):
        body = body[1:]
    return body[-1].end_lineno - body[0].lineno + 1 if body else 0


def long_functions(source: str, limit: int = MAX_BODY_LINES) -> list[tuple[str, int]]:
    """``(name, body lines)`` of every function (methods and nested ones too) over ``limit``."""
    return [
        (node.name, body_lines(node))
        for node in ast.walk(ast.parse(source))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and body_lines(node) > limit
    ]


def _checked_files() -> list[Path]:
    return sorted([*PACKAGE.rglob("*.py"), *CLI.rglob("*.py")])


@pytest.mark.parametrize(
    ("body", "doc_lines", "signature_lines", "expected"),
    [(80, 0, 0, []), (80, 30, 0, []), (80, 0, 40, []), (81, 0, 0, [("f", 81)]), (100, 5, 3, [("f", 100)])],
    ids=["80-body", "80-body-30-doc", "80-body-long-signature", "81-body", "100-body"],
)
def test_the_counter_counts_the_body_not_the_docstring_or_signature(
    body, doc_lines, signature_lines, expected
):
    doc = ['    """'] + ["    text"] * max(doc_lines - 2, 0) + ['    """'] if doc_lines else []
    signature = ["def f(", *[f"    a{i}=1," for i in range(signature_lines)], "):"]
    source = "\n".join([*signature, *doc, *["    x = 1"] * body]) + "\n"
    assert long_functions(source) == expected


def test_nested_functions_and_methods_are_counted():
    body = "\n".join(["        y = 2"] * 85)
    source = textwrap.dedent("class C:\n    def m(self):\n") + body + "\n"
    assert long_functions(source) == [("m", 85)]


def test_the_walk_covers_the_library_and_the_command_line():
    names = {str(p.relative_to(PACKAGE.parent)) for p in _checked_files()}
    assert {
        "landscape/connect/api.py",
        "landscape/surface/grid.py",
        "landscape/studies/demo.py",
        "cli/sharpness.py",
    } <= names


def test_no_function_body_over_80_lines():
    long = [
        f"{path.relative_to(PACKAGE.parent)}:{name} ({n} lines)"
        for path in _checked_files()
        for name, n in long_functions(path.read_text())
    ]
    assert long == []


# -- imports between packages ------------------------------------------------------------------------
def _unit(path: Path) -> str:
    """The package (or loose module) a file of the library belongs to."""
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def package_imports() -> dict[tuple[str, str], list[str]]:
    """``(importer, imported) -> ['file:line', ...]`` for every import between two packages."""
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path in PACKAGE.rglob("*.py"):
        src = _unit(path)
        if src in ("__init__", "__main__"):
            continue  # the lazy public API and the entry point sit above everything
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules = [node.module]
            elif isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            else:
                continue
            for module in modules:
                parts = module.split(".")
                if parts[0] == "landscape" and len(parts) > 1 and parts[1] not in (src, "cli"):
                    edges[(src, parts[1])].append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    return edges


def find_cycle(edges: set[tuple[str, str]]) -> list[str] | None:
    """One cycle of the directed graph, as ``[a, b, ..., a]``, or ``None``."""
    graph: dict[str, set[str]] = defaultdict(set)
    for a, b in edges:
        graph[a].add(b)
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(v: str) -> list[str] | None:
        state[v] = 1
        path.append(v)
        for w in sorted(graph[v]):
            if state.get(w) == 1:
                return path[path.index(w) :] + [w]
            if w not in state and (cycle := visit(w)):
                return cycle
        path.pop()
        state[v] = 2
        return None

    for v in sorted(graph):
        if v not in state and (cycle := visit(v)):
            return cycle
    return None


@pytest.mark.parametrize(
    ("edges", "has_cycle"),
    [
        ({("a", "b"), ("b", "c")}, False),
        ({("a", "b"), ("b", "a")}, True),
        ({("a", "b"), ("b", "c"), ("c", "a")}, True),
    ],
    ids=["chain", "two", "three"],
)
def test_the_cycle_finder(edges, has_cycle):
    assert (find_cycle(edges) is not None) == has_cycle


def test_no_import_cycle_between_packages():
    edges = package_imports()
    assert ("analysis", "hessian") in edges  # the walk sees imports at all
    cycle = find_cycle(set(edges))
    where = [f"{a} -> {b}: {', '.join(edges[(a, b)][:3])}" for a, b in zip(cycle, cycle[1:])] if cycle else []
    assert cycle is None, "import cycle: " + "; ".join(where)


def test_the_numerics_import_no_pipeline_above_them():
    # hessian/ and measures/ are numerics; the sharpness pipeline (analysis/) sits above both
    edges = package_imports()
    assert not [
        (a, b) for a, b in edges if a in ("hessian", "measures") and b in ("analysis", "runs", "studies")
    ]


def test_the_top_level_keeps_infrastructure_only():
    loose = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__", "__main__"}
    assert loose <= INFRASTRUCTURE and len(loose) <= 6, sorted(loose - INFRASTRUCTURE)


# -- modules and the functions they export -----------------------------------------------------------
PACKAGES = sorted(m.name for m in pkgutil.iter_modules(landscape.__path__) if m.ispkg and m.name != "cli")


@pytest.mark.parametrize("package", PACKAGES)
def test_no_export_shadows_a_module_of_its_package(package: str) -> None:
    pkg = importlib.import_module(f"landscape.{package}")
    for info in pkgutil.iter_modules(pkg.__path__):
        module = importlib.import_module(f"landscape.{package}.{info.name}")
        attr = getattr(pkg, info.name, None)
        assert attr is None or attr is module, f"landscape.{package}.{info.name} is {attr!r}, not the module"


@pytest.mark.parametrize(
    ("package", "short"),
    [
        ("hessian", "trace"),
        ("hessian", "lanczos"),
        ("hessian", "slq"),
        ("hessian", "per_layer"),
        ("analysis", "sharpness"),
    ],
)
def test_exported_functions_are_functions(package: str, short: str) -> None:
    # the names users call stay functions (the modules behind them have other names)
    assert inspect.isfunction(getattr(importlib.import_module(f"landscape.{package}"), short))
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(f"landscape.{package}.{short}")
