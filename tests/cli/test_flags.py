"""The one table from library parameter names to flags: complete, true to the commands, idempotent."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import click
import pytest

from landscape.cli.flags import (
    COMMAND_PARAM_FLAGS,
    KEPT_AS_NAMES,
    NOT_FLAGS,
    PARAM_FLAGS,
    as_flags,
    with_flags,
)
from landscape.cli.main import COMMANDS, cli
from landscape.errors import ConfigError
from landscape.io.result_folder import SettingsMismatchError

LIBRARY = Path(__file__).resolve().parents[2] / "landscape"
# ``name=`` where a parameter name starts a word (as landscape.errors asks messages to write it)
_NAME_EQ = re.compile(r"(?<![\w/.'\"\-])([a-z][a-z0-9_]*)=(?!=)")
_CHECKS = ("check_positive", "check_choice")


def _texts(node: ast.AST) -> list[str]:
    """The literal text of a message (an f-string's placeholders as a NUL)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        return ["".join(v.value if isinstance(v, ast.Constant) else "\0" for v in node.values)]
    return []


def _call_name(node: ast.Call) -> str:
    f = node.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""


def message_names() -> dict[str, set[str]]:
    """Every parameter name a library message can show, with the modules that show it.

    Messages are the arguments of ``...Error(...)``/``...Warning(...)``/``warn(...)`` calls and the
    first argument of ``check_positive``/``check_choice``.
    """
    found: dict[str, set[str]] = {}
    for path in sorted(LIBRARY.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name, where = _call_name(node), path.relative_to(LIBRARY).as_posix()
            if name in _CHECKS and node.args and isinstance(node.args[0], ast.Constant):
                found.setdefault(str(node.args[0].value), set()).add(where)
            if name.endswith(("Error", "Warning")) or name == "warn":
                for text in (t for a in node.args for sub in ast.walk(a) for t in _texts(sub)):
                    for m in _NAME_EQ.finditer(text):
                        found.setdefault(m.group(1), set()).add(where)
    return found


def _options(command: str) -> set[str]:
    cmd = cli.get_command(click.Context(cli), command)
    assert cmd is not None
    return {o for p in cmd.params for o in getattr(p, "opts", [])} | {"--threads"}  # the group's own


def _long(option: str) -> str:
    return option.split("/")[-1]


def test_the_collector_sees_the_messages():
    names = message_names()
    # one of each form: check_positive, check_choice, an f-string "name={...}", a switch "name=True"
    assert {"batch_size", "optimizer", "data_dir", "unsafe_load", "top_k"} <= set(names)
    assert len(names) > 100


def test_every_name_a_library_message_shows_has_its_flag_or_a_reason():
    tables = [PARAM_FLAGS, *COMMAND_PARAM_FLAGS.values(), *KEPT_AS_NAMES.values()]
    flagged = set().union(*tables)
    missing = {n: sorted(w) for n, w in message_names().items() if n not in flagged and n not in NOT_FLAGS}
    assert not missing, f"add a line to cli/flags.py (landscape.cli.flags) for: {missing}"


def test_names_without_a_flag_are_still_used_and_have_none():
    names = message_names()
    assert sorted(n for n in NOT_FLAGS if n not in names) == []
    tables = [PARAM_FLAGS, *COMMAND_PARAM_FLAGS.values(), *KEPT_AS_NAMES.values()]
    assert sorted(set(NOT_FLAGS) & set().union(*tables)) == []


@pytest.mark.parametrize("command", sorted({*COMMAND_PARAM_FLAGS, *KEPT_AS_NAMES}))
def test_a_command_table_names_the_command_s_own_flags(command):
    assert command in COMMANDS
    table = {**COMMAND_PARAM_FLAGS.get(command, {}), **KEPT_AS_NAMES.get(command, {})}
    options = _options(command)
    wrong = {n: f.option for n, f in table.items() if _long(f.option) not in options}
    assert not wrong, f"{command} has no such flags: {wrong}"


def test_every_shared_flag_is_a_flag_of_some_command():
    options = set().union(*(_options(c) for c in COMMANDS))
    assert sorted(f.option for f in PARAM_FLAGS.values() if _long(f.option) not in options) == []


MESSAGES = [
    "batch_size=0 must be > 0; lower batch_size",
    "optimizer='adagrad' is not valid; use another out_dir or pass overwrite=True",
    "to= goes with dir_type='interpolation'; ckpts= and trajectory='/t' too",
    "points=1 must be >= 2; pass unsafe_load=True or model='pkg.mod:fn'",
    "the model_kwargs num_classes=3 do not fit; lower lr (now 0.1) or rho",
]


@pytest.mark.parametrize("command", [None, *sorted(COMMANDS)])
def test_rewriting_twice_changes_nothing(command):
    # cli/train.py and cli/result_folder.py rewrite, and the group rewrites what reaches it again
    for message in MESSAGES:
        once = as_flags(message, command)
        assert as_flags(once, command) == once


@pytest.mark.parametrize(
    ("command", "message", "expected"),
    [
        pytest.param(None, "pass overwrite=True", "pass --overwrite", id="switch"),
        pytest.param("train", "seed=-1 is bad", "--seed=-1 is bad", id="command-joiner"),
        pytest.param(None, "seed=-1 is bad", "--seed -1 is bad", id="shared-joiner"),
        pytest.param(
            "train",
            "schedule='cosine' without warmup_epochs",
            "--schedule cosine without --warmup-epochs",
            id="unquote",
        ),
        pytest.param("plot2d", "ckpts= needs two", "--ckpts B C needs two", id="metavar"),
        pytest.param("plot1d", "mode='x' is not valid", "--mode x is not valid", id="plot-mode"),
        pytest.param("train", "turn augment off", "turn --augment off", id="after-verb"),
        pytest.param("connect", "(lr differ)", "(lr differ)", id="no-verb"),
        pytest.param(None, "under /data/out_dir/x", "under /data/out_dir/x", id="path"),
        pytest.param("sharpness", "top_k=0 must be > 0", "top_k=0 must be > 0", id="kept-as-names"),
    ],
)
def test_the_table_decides_how_a_name_is_shown(command, message, expected):
    assert as_flags(message, command) == expected


def test_with_flags_keeps_the_error_and_its_attributes(tmp_path):
    exc = SettingsMismatchError(
        "x (batch_size differ); pass overwrite=True", path=tmp_path, differences=["b"]
    )
    flagged = with_flags(exc, "sharpness")
    assert (
        type(flagged) is SettingsMismatchError and str(flagged) == "x (--batch-size differ); pass --overwrite"
    )
    assert flagged.path == tmp_path and flagged.differences == ["b"]
    assert isinstance(with_flags(ConfigError("device='x'")), ConfigError)
