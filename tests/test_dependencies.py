"""Every runtime dependency is imported by the library or the CLI; test-only packages are dev extras."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
IMPORT_NAMES = {"scikit-learn": "sklearn"}  # distribution name -> import name where they differ


def _requirement_names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].strip().lower() for r in requirements}


def _imported_top_level_modules() -> set[str]:
    found = set()
    for folder in ("landscape", "cli"):
        for path in (ROOT / folder).rglob("*.py"):
            text = path.read_text()
            found |= set(re.findall(r"^\s*(?:import|from)\s+([A-Za-z_]\w*)", text, re.M))
    return found


def test_every_runtime_dependency_is_used():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    imported = _imported_top_level_modules()
    unused = {
        n for n in _requirement_names(project["dependencies"]) if IMPORT_NAMES.get(n, n) not in imported
    }
    assert not unused, f"runtime dependencies nothing imports: {unused}"


def test_pandas_is_a_dev_dependency_only():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "pandas" not in _requirement_names(project["dependencies"])
    assert "pandas" in _requirement_names(project["optional-dependencies"]["dev"])
    assert "pandas" not in _imported_top_level_modules()
