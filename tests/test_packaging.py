"""The wheel has one top-level package, ``landscape``, and lists every subpackage (the CLI as landscape.cli)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def _config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_package_under_landscape_is_listed():
    setuptools = _config()["tool"]["setuptools"]
    on_disk = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for p in (ROOT / "landscape").rglob("__init__.py")
        if "__pycache__" not in p.parts
    }
    listed = set(setuptools["packages"])
    assert listed - {"landscape.cli"} == on_disk
    assert setuptools["package-dir"] == {"landscape.cli": "cli"}
    assert all(name == "landscape" or name.startswith("landscape.") for name in listed)
    assert _config()["project"]["scripts"] == {"landscape": "landscape.cli.main:main"}


def test_python_dash_m_landscape_runs_the_command():
    proc = subprocess.run(
        [sys.executable, "-m", "landscape", "--version"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("landscape, version")
