"""The CLI on good and bad input: one clear line and exit 1, never a traceback."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import click
import pytest
import torch
from click.testing import CliRunner

from landscape import __version__
from landscape.cli.main import COMMANDS, cli, main
from landscape.models.builders import build_model

REPO = Path(__file__).resolve().parents[2]


def run(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def assert_clean_error(result, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    out = result.output.strip()
    assert out.startswith("error: "), out
    assert len(out.splitlines()) == 1, out
    assert "Traceback" not in out
    for frag in fragments:
        assert frag in out, out


def test_help_and_version_list_only_working_commands():
    r = run("--help")
    assert r.exit_code == 0
    assert "info" in r.output and "evaluate" in r.output
    assert run("-h").exit_code == 0
    v = run("--version")
    assert v.exit_code == 0 and __version__ in v.output
    for command in ("info", "evaluate"):
        h = run(command, "--help")
        assert h.exit_code == 0 and "Examples:" in h.output


def test_info_on_users_plain_state_dict(tmp_path):
    """The 'done when' of the foundation: torch.save(model.state_dict()) of a user's own model."""
    model = build_model("mlp", hidden=[16], activation="relu")
    torch.save(model.state_dict(), tmp_path / "mine.pt")
    plain = run("info", tmp_path / "mine.pt", "--json")
    assert plain.exit_code == 0, plain.output
    desc = json.loads(plain.output)
    assert desc["format"] == "state_dict" and desc["model"] is None
    assert desc["num_parameters"] == 64 * 16 + 16 + 16 * 10 + 10
    full = run(
        "info",
        tmp_path / "mine.pt",
        "--model",
        "landscape.models.builders:MLP",
        "--model-kwargs",
        '{"hidden": [16], "activation": "relu"}',
    )
    assert full.exit_code == 0, full.output
    assert "Linear" in full.output and "1,210" in full.output


def test_info_table_and_evaluate(cnn_checkpoint, tmp_path):
    r = run("info", cnn_checkpoint)
    assert r.exit_code == 0
    assert "BatchNorm2d" in r.output and "running_mean" in r.output and "digits" in r.output
    e = run(
        "evaluate", cnn_checkpoint, "--samples", "64", "--json", "--dtype", "float64", "-o", tmp_path / "ev"
    )
    assert e.exit_code == 0, e.output
    res = json.loads(e.output)
    assert res["num_samples"] == 64 and res["bn_mode"] == "eval" and res["device"] == "cpu"
    assert json.loads((tmp_path / "ev" / "evaluation.json").read_text())["loss"] == res["loss"]


@pytest.mark.parametrize(
    ("make", "args", "fragments"),
    [
        pytest.param(lambda d: d / "nope.pt", (), ("does not exist",), id="missing-file"),
        pytest.param(lambda d: d, (), ("is a directory",), id="directory"),
        pytest.param(
            lambda d: (d / "cut.pt").write_bytes((d / "cnn.pt").read_bytes()[:300]) and d / "cut.pt",
            (),
            ("truncated or not a PyTorch file",),
            id="truncated",
        ),
        pytest.param(
            lambda d: d / "cnn.pt",
            ("--model", "mlp"),
            ("does not fit the model architecture", "missing keys"),
            id="wrong-architecture",
        ),
        pytest.param(
            lambda d: d / "cnn.pt", ("--model", "resnet19"), ("unknown model 'resnet19'",), id="unknown-model"
        ),
        pytest.param(
            lambda d: d / "cnn.pt",
            ("--model", "cnn", "--model-kwargs", "{width: 4"),
            ("--model-kwargs is not valid JSON",),
            id="malformed-model-kwargs",
        ),
    ],
)
def test_info_bad_input(cnn_checkpoint, make, args, fragments):
    path = make(cnn_checkpoint.parent)
    assert_clean_error(run("info", path, *args), *fragments)


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        pytest.param(("--data", "imagenet"), ("unknown dataset 'imagenet'",), id="unknown-dataset"),
        pytest.param(
            ("--data", "cifar10", "--data-dir", "/no/such/dir"), ("does not exist",), id="missing-data-folder"
        ),
        pytest.param(("--data", "cifar10"), ("needs --data-dir",), id="data-folder-not-given"),
        pytest.param(("--device", "cuda:7"), ("cuda:7",), id="absent-device"),
        pytest.param(("--samples", "0"), ("--samples 0", "positive"), id="zero-samples"),
    ],
)
def test_evaluate_bad_data(cnn_checkpoint, args, fragments):
    if "cuda:7" in args and torch.cuda.device_count() > 7:
        pytest.skip("this machine has 8 GPUs")
    assert_clean_error(run("evaluate", cnn_checkpoint, *args), *fragments)


@pytest.mark.parametrize("seed", range(40))
def test_info_on_random_bytes(tmp_path, seed):
    """Any garbage file gives the one-line refusal (some byte strings break the unpickler oddly)."""
    import random

    path = tmp_path / "rand.pt"
    path.write_bytes(random.Random(seed).randbytes(4096))
    assert_clean_error(run("info", path), "rand.pt")


class _Planted:
    """Unpickling this creates a file: what a malicious checkpoint would do."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


@pytest.mark.parametrize("how", ["torch-save", "raw-pickle"])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, how):
    marker = tmp_path / "planted.txt"
    path = tmp_path / "evil.pt"
    payload = {"state_dict": {"w": torch.zeros(2)}, "x": _Planted(str(marker))}
    if how == "torch-save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload))
    for command in ("info", "evaluate"):
        result = run(command, path)
        assert_clean_error(result, "--unsafe-load", "'io.open'" if how == "raw-pickle" else "open")
        assert not marker.exists()


def test_real_subprocess_entry_point(cnn_checkpoint):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    ok = subprocess.run(
        [sys.executable, "-m", "landscape", "info", str(cnn_checkpoint), "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["model"]["name"] == "cnn"
    bad = subprocess.run(
        [sys.executable, "-m", "landscape", "info", str(cnn_checkpoint.parent / "missing.pt")],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )
    assert bad.returncode == 1
    assert bad.stderr.strip().startswith("error: ") and "Traceback" not in bad.stderr


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["evaluate", "x.pt", "--dtype", "half"], "Invalid value for '--dtype'"),
        (["nosuch"], "No such command 'nosuch'"),
        (["info"], "Missing argument 'CHECKPOINT'"),
    ],
    ids=["bad-choice", "unknown-command", "missing-argument"],
)
def test_usage_errors_are_one_line_from_the_entry_point(args, fragment, monkeypatch, capsys):
    """In process through ``main()``, the function the ``landscape`` script calls."""
    monkeypatch.setattr(sys, "argv", ["landscape", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert captured.out == ""
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], captured.err


def test_a_usage_error_from_a_real_process_is_one_line_and_imports_no_torch():
    """The one real subprocess of the usage errors: exit status 2, one line, and torch never loaded."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    code = (
        "import sys; sys.argv = ['landscape', 'nosuch']\n"
        "from landscape.cli.main import main\n"
        "try:\n    main()\n"
        "finally:\n    print('torch' in sys.modules)"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO, timeout=120
    )
    assert r.returncode == 2
    assert r.stdout.strip() == "False"
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: No such command 'nosuch'"), r.stderr


@pytest.mark.parametrize("module", ["landscape", "landscape.cli.main"])
def test_importing_the_command_line_does_not_import_torch(module):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    code = f"import sys, {module}; print(sorted(m for m in ('torch', 'numpy', 'matplotlib') if m in sys.modules))"
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO, timeout=120
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_the_command_listing_matches_each_commands_own_help():
    """The group lists commands from a static table; each entry must be the command's own first paragraph."""
    assert cli.list_commands(None) == sorted(COMMANDS)
    listing = run("--help").output
    for name, (target, short_help) in COMMANDS.items():
        command = cli.get_command(None, name)
        assert isinstance(command, click.Command) and command.name == name, target
        assert command.help.split("\n\n")[0].strip() == short_help
        for limit in (30, 45, 80, 200):
            static = click.Command(name, help=short_help).get_short_help_str(limit)
            assert static == command.get_short_help_str(limit)
        assert f"  {name} " in listing
    assert cli.get_command(None, "nosuch") is None


def test_a_failure_inside_user_code_is_one_line(tmp_path, monkeypatch):
    """A user's model factory that raises mid-run gives one line, or the traceback with LANDSCAPE_DEBUG."""
    pkg = tmp_path / "usermods.py"
    pkg.write_text(
        "import torch\n"
        "class Bad(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.lin = torch.nn.Linear(64, 10)\n"
        "    def forward(self, x):\n"
        "        raise KeyError('boom')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import usermods

    torch.save(usermods.Bad().state_dict(), tmp_path / "bad.pt")
    monkeypatch.delenv("LANDSCAPE_DEBUG", raising=False)
    r = run("evaluate", tmp_path / "bad.pt", "--model", "usermods:Bad", "--samples", "8")
    assert_clean_error(r, "unexpected KeyError", "LANDSCAPE_DEBUG=1")
    monkeypatch.setenv("LANDSCAPE_DEBUG", "1")
    with pytest.raises(KeyError, match="boom"):
        run("evaluate", tmp_path / "bad.pt", "--model", "usermods:Bad", "--samples", "8")
