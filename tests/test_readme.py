"""README and CI stay in step: the test command CI runs is the README's, and documented commands exist."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from landscape.cli.main import cli

ROOT = Path(__file__).resolve().parents[1]


def _readme_block_after(heading: str) -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split(f"## {heading}", 1)[1]
    return re.search(r"```bash\n(.+?)\n```", section, re.S).group(1).strip()


def test_ci_runs_the_readme_test_command():
    command = _readme_block_after("Tests")
    ci = (ROOT / ".ci" / "run").read_text()
    install, _, pytest_cmd = command.rpartition(" && ")
    assert pytest_cmd.startswith("python -m pytest")
    assert pytest_cmd in ci.splitlines()
    assert "pip install --quiet torch==2.13.0" in ci and 'pip install --quiet -e ".[dev]"' in ci
    assert "venv" in ci


def test_documented_commands_exist_and_undocumented_ones_do_not():
    text = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"^\| `landscape ([a-z0-9-]+)", text, re.M))
    registered = set(cli.list_commands(None))
    assert documented == registered
    for name in registered:
        assert CliRunner().invoke(cli, [name, "--help"]).exit_code == 0
