"""The hessian package's layout: modules are never shadowed by the functions they export, and no
function grows past ~80 lines."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import types
from pathlib import Path

import pytest

import landscape.hessian

MODULES = sorted(m.name for m in pkgutil.iter_modules(landscape.hessian.__path__))


def test_the_package_has_the_expected_modules() -> None:
    # guards the parametrization below against an empty or wrong package path
    assert {
        "krylov",
        "trace_estimation",
        "trace_hutchinson",
        "sharpness_pipeline",
        "pyhessian_backend",
    } <= set(MODULES)


@pytest.mark.parametrize("short", MODULES)
def test_import_gives_the_module_and_no_export_shadows_it(short: str) -> None:
    module = importlib.import_module(f"landscape.hessian.{short}")
    assert isinstance(module, types.ModuleType)
    attr = getattr(landscape.hessian, short, None)
    assert attr is None or attr is module, f"landscape.hessian.{short} is {attr!r}, not the module"
    assert not inspect.isfunction(attr)


@pytest.mark.parametrize("short", ["trace", "sharpness", "lanczos", "slq", "per_layer"])
def test_exported_functions_are_functions(short: str) -> None:
    # the names users call stay functions (the modules behind them have other names)
    assert inspect.isfunction(getattr(landscape.hessian, short))
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(f"landscape.hessian.{short}")


def test_no_function_over_80_lines() -> None:
    long = []
    for path in Path(landscape.hessian.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > 80:
                    long.append(f"{path.name}:{node.name} ({length} lines)")
    assert long == []
