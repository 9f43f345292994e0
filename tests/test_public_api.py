"""The top level: ~30 names a notebook needs, looked up lazily; no public function hides its own module."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import types
from pathlib import Path

import pytest

import landscape

ROOT = Path(__file__).resolve().parents[1]

# Modules whose attribute on the parent package is a function of the same name, so that
# ``import landscape.hessian.trace as m`` gives the function. Issue 9 part B renames these modules;
# the set may only shrink (the lead empties it when B's branch lands).
KNOWN_SHADOWED: set[str] = set()  # none left: only ever shrink this


def test_all_lists_exactly_the_lazy_table():
    assert landscape.__all__[0] == "__version__"
    assert len(landscape.__all__) == len(set(landscape.__all__))
    assert set(landscape.__all__) == {"__version__", *landscape._PUBLIC}
    assert 20 <= len(landscape._PUBLIC) <= 35


@pytest.mark.parametrize("name", sorted(landscape._PUBLIC))
def test_every_public_name_resolves_to_its_target(name):
    module_name, _, attribute = landscape._PUBLIC[name].partition(":")
    value = getattr(landscape, name)
    assert value is getattr(importlib.import_module(module_name), attribute)
    assert not isinstance(value, types.ModuleType)
    assert name in dir(landscape)


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nosuch'"):
        landscape.nosuch  # noqa: B018
    assert not hasattr(landscape, "compute_hg")  # internals stay in their subpackages


def test_type_checking_block_names_the_same_objects():
    """What IDEs see (the ``if TYPE_CHECKING:`` imports) is what ``__getattr__`` returns."""
    tree = ast.parse((ROOT / "landscape" / "__init__.py").read_text())
    block = next(
        n for n in tree.body if isinstance(n, ast.If) and getattr(n.test, "id", "") == "TYPE_CHECKING"
    )
    seen = {
        alias.asname or alias.name: f"{node.module}:{alias.name}"
        for node in block.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert seen == landscape._PUBLIC


def test_no_public_name_is_also_a_top_level_module():
    """``landscape.train`` cannot be both the module and the function: the module would win on import."""
    modules = {info.name for info in pkgutil.iter_modules(landscape.__path__)}
    assert not modules & set(landscape._PUBLIC)


def test_no_function_shadows_its_own_module():
    shadowed = set()
    for info in pkgutil.walk_packages(landscape.__path__, "landscape."):
        importlib.import_module(info.name)
        parent, _, child = info.name.rpartition(".")
        if not inspect.ismodule(getattr(importlib.import_module(parent), child)):
            shadowed.add(info.name)
    assert shadowed <= KNOWN_SHADOWED, f"these modules are hidden by a function of their name: {shadowed}"
