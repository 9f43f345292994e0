"""``landscape connect``: files and figures, and one-line refusals of bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from landscape.cli.connect import connect, to_flags
from landscape.connect import ConnectResult
from landscape.data.datasets import DataSpec
from landscape.models.builders import ModelSpec, build_model
from landscape.models.checkpoints import save_checkpoint

REPO = Path(__file__).resolve().parents[2]
COMMON = ["--samples", "48", "--batch-size", "24", "--device", "cpu", "-q"]


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _ckpt(path: Path, seed: int, name: str = "cnn", **kwargs: object) -> Path:
    torch.manual_seed(seed)
    kwargs = kwargs or {"cnn": {"width": 4}, "mlp": {"hidden": [8]}}.get(name, {})
    save_checkpoint(
        path,
        build_model(name, **kwargs),
        model_spec=ModelSpec(name, dict(kwargs)),
        data_spec=DataSpec("digits"),
    )
    return path


def run(*args: object):
    return CliRunner().invoke(connect, [str(a) for a in args])


def test_help_has_examples():
    r = run("--help")
    assert r.exit_code == 0 and "Examples:" in r.output and "--curve" in r.output and "--align" in r.output


def test_connect_writes_json_and_figures(tmp_path):
    a, b = _ckpt(tmp_path / "a.pt", 0), _ckpt(tmp_path / "b.pt", 1)
    out = tmp_path / "out"
    r = run(
        a,
        b,
        "-o",
        out,
        "--points",
        "3",
        "--curve",
        "bezier",
        "--epochs",
        "1",
        "--align",
        "weight-matching",
        "--format",
        "png",
        "--format",
        "pdf",
        "--json",
        *COMMON,
    )
    assert r.exit_code == 0, r.output
    printed = json.loads(r.output)
    saved = json.loads((out / "connect.json").read_text())
    for key in ("linear", "linear_unaligned", "bezier"):
        for field in (
            "loss",
            "accuracy",
            "barrier_loss",
            "barrier_error",
            "barrier_loss_at",
            "barrier_error_at",
        ):
            assert field in saved[key], (key, field)
    assert saved["linear"]["alphas"] == [0.0, 0.5, 1.0] and saved["bezier"]["t"] == [0.0, 0.5, 1.0]
    assert saved["bn"] == "recalibrate" and saved["alignment"]["method"] == "weight-matching"
    assert printed["linear"] == saved["linear"]
    assert {Path(p).name for p in printed["figures"]} == {"connect.png", "connect.pdf"}
    for p in printed["figures"]:
        assert Path(p).stat().st_size > 1000
    assert (out / "b_aligned.pt").is_file() and (out / "bezier.pt").is_file()
    result = ConnectResult.from_json(out / "connect.json")
    assert result.paths["bezier"].info["epochs"] == 1


def test_bn_states_is_recorded(tmp_path):
    a, b = _ckpt(tmp_path / "a.pt", 0), _ckpt(tmp_path / "b.pt", 1)
    r = run(a, b, "-o", tmp_path / "o", "--points", "2", "--bn", "states", *COMMON)
    assert r.exit_code == 0, r.output
    assert "batch norm  states" in r.output
    assert json.loads((tmp_path / "o" / "connect.json").read_text())["linear"]["bn"] == "states"


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("points", "--points 1 must be an integer >= 2"),
        ("missing", "does not exist"),
        ("mismatch", "does not fit the model architecture"),
        ("curve", "--curve 'spline' is not valid; choose one of 'bezier', 'polychain'"),
        ("bn", "--bn 'running' is not valid"),
        ("out-file", "-o/--out"),
        ("other-settings", "pass --overwrite"),
    ],
)
def test_bad_input_is_one_line(tmp_path, case, message):
    a, b = _ckpt(tmp_path / "a.pt", 0), _ckpt(tmp_path / "b.pt", 1)
    out = tmp_path / "o"
    args: list[object] = [a, b, "-o", out, "--points", "2"]
    if case == "points":
        args[-1] = "1"
    elif case == "missing":
        args[1] = tmp_path / "nope.pt"
    elif case == "mismatch":
        args[1] = _ckpt(tmp_path / "mlp.pt", 0, "mlp")
    elif case == "curve":
        args += ["--curve", "spline"]
    elif case == "bn":
        args += ["--bn", "running"]
    elif case == "out-file":
        args[3] = a
    elif case == "other-settings":
        assert run(*args, *COMMON).exit_code == 0
        args[-1] = "3"
    r = run(*args, *COMMON)
    assert r.exit_code == 1
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], r.output
    assert "Traceback" not in r.output
    if case == "out-file":
        assert a.stat().st_size > 0 and torch.load(a, weights_only=True)["format"] == "landscape-checkpoint"


def test_library_parameter_names_become_flags():
    assert to_flags("points=1 must be >= 2") == "--points 1 must be >= 2"
    assert to_flags("bn='x' is not valid; pass overwrite=True") == "--bn 'x' is not valid; pass --overwrite"
    assert to_flags("checkpoints=1") == "checkpoints=1"  # only whole parameter names


def test_real_subprocess(tmp_path):
    a = _ckpt(tmp_path / "a.pt", 0, "mlp")
    env = dict(os.environ, OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    code = "import sys; from landscape.cli.connect import connect; connect.main(sys.argv[1:], prog_name='landscape connect')"
    args = [sys.executable, "-c", code, str(a), str(a), "-o", str(tmp_path / "o"), "--points", "3", *COMMON]
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "linear" in proc.stdout and "barrier loss 0 " in proc.stdout


def layernorm_net() -> torch.nn.Module:
    """Digits MLP with a LayerNorm: weight matching cannot permute through it."""
    nn = torch.nn
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.LayerNorm(8), nn.ReLU(), nn.Linear(8, 10))


def test_unalignable_architecture_is_one_line_naming_the_layer(tmp_path):
    # imported by name as a model factory: this module is on sys.path under pytest's default import mode
    a = _ckpt(tmp_path / "a.pt", 0, f"{__name__}:layernorm_net")
    r = run(a, a, "-o", tmp_path / "o", "--points", "2", "--align", "weight-matching", *COMMON)
    assert r.exit_code == 1
    assert r.output.strip() == (
        "error: cannot align layer '2' (LayerNorm): weight matching supports Linear, Conv2d (groups=1), "
        "BatchNorm1d/2d, elementwise activations, pooling, flatten, dropout and residual additions"
    )
    assert not (tmp_path / "o" / "connect.json").exists()
