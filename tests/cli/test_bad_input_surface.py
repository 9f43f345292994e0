"""Every bad input of ``landscape plot1d``/``plot2d``: one line naming the value and the fix, exit 1,
and nothing written (the output folder is not even created)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from landscape.cli.flags import as_flags
from landscape.cli.main import cli
from landscape.cli.surface_common import parse_range
from landscape.data.datasets import DataSpec
from landscape.errors import ConfigError
from landscape.models.builders import ModelSpec, build_model
from landscape.models.checkpoints import save_checkpoint

COMMON = ["--samples", "32", "--batch-size", "32", "--device", "cpu", "-q"]


def _save(path: Path, name: str = "cnn", seed: int = 0, poison: str | None = None) -> None:
    torch.manual_seed(seed)
    kwargs: dict[str, object] = {"width": 4} if name == "cnn" else {"hidden": [8]}
    model = build_model(name, **kwargs)
    with torch.no_grad():
        if poison == "nan-weight":
            model.features[0].weight[0, 0, 0, 0] = float("nan")
        elif poison == "inf-buffer":
            model.features[1].running_var[1] = float("inf")
    save_checkpoint(path, model, model_spec=ModelSpec(name, kwargs), data_spec=DataSpec("digits"))


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("bad_input")
    _save(root / "a.pt")
    _save(root / "b.pt", seed=1)
    _save(root / "nan.pt", poison="nan-weight")
    _save(root / "inf.pt", poison="inf-buffer")
    _save(root / "mlp.pt", name="mlp")
    (root / "one").mkdir()
    _save(root / "one" / "only.pt")
    (root / "taken.txt").write_text("not a folder\n")
    made = CliRunner().invoke(
        cli, ["plot1d", str(root / "a.pt"), "--x", "0:1:2", "-o", str(root / "made"), *COMMON]
    )
    assert made.exit_code == 0, made.output
    return {
        "a": str(root / "a.pt"),
        "b": str(root / "b.pt"),
        "nan": str(root / "nan.pt"),
        "inf": str(root / "inf.pt"),
        "mlp": str(root / "mlp.pt"),
        "one": str(root / "one"),
        "taken": str(root / "taken.txt"),
        "made": str(root / "made"),
        "npz1d": str(root / "made" / "a_random_1d.npz"),
        "missing": str(root / "missing.pt"),
    }


# (command, arguments, fragments the one line must hold); {name} is a file of the fixture
CASES = [
    ("plot1d", ["{a}", "--batch-size", "0"], ["--batch-size 0", "positive"]),
    ("plot1d", ["{a}", "--batch-size", "-4"], ["--batch-size -4", "positive"]),
    ("plot2d", ["{a}", "--batch-size", "0"], ["--batch-size 0", "positive"]),
    ("plot2d", ["{a}", "--batch-size", "-4"], ["--batch-size -4", "positive"]),
    ("plot1d", ["{a}", "-o", "{taken}"], ["-o/--out", "taken.txt", "existing file", "folder"]),
    ("plot2d", ["{a}", "-o", "{taken}"], ["-o/--out", "taken.txt", "existing file", "folder"]),
    ("plot1d", ["{nan}"], ["nan.pt", "'features.0.weight'", "1 NaN", "earlier checkpoint"]),
    ("plot2d", ["{nan}"], ["nan.pt", "'features.0.weight'", "1 NaN", "earlier checkpoint"]),
    ("plot2d", ["{inf}"], ["inf.pt", "'features.1.running_var'", "1 inf"]),
    ("plot1d", ["{a}", "--to", "{nan}"], ["nan.pt", "'features.0.weight'", "non-finite"]),
    ("plot2d", ["{a}", "--ckpts", "{b}", "{nan}"], ["nan.pt", "non-finite"]),
    ("plot1d", ["{a}", "--x", "1:2"], ["--x='1:2'", "MIN:MAX:NUM"]),
    ("plot1d", ["{a}", "--x", "a:b:c"], ["--x='a:b:c'", "MIN:MAX:NUM"]),
    ("plot1d", ["{a}", "--x", "-1:1:2.5"], ["--x='-1:1:2.5'", "MIN:MAX:NUM"]),
    ("plot1d", ["{a}", "--x", "0:1:0"], ["--x='0:1:0'", "NUM=0", ">= 1"]),
    ("plot1d", ["{a}", "--x", "1:0:3"], ["--x='1:0:3'", "MIN must be <= MAX"]),
    ("plot1d", ["{a}", "--x", "0:inf:3"], ["--x='0:inf:3'", "finite"]),
    ("plot1d", ["{a}", "--x", "0:1:1"], ["--x='0:1:1'", "NUM=1 needs MIN == MAX"]),
    ("plot2d", ["{a}", "--y", "1:0:3"], ["--y='1:0:3'", "MIN must be <= MAX"]),
    ("plot2d", ["{a}", "--x", "-1:1"], ["--x='-1:1'", "MIN:MAX:NUM"]),
    ("plot1d", ["{a}", "--chunk-size", "0"], ["--chunk-size 0", ">= 1"]),
    ("plot2d", ["{a}", "--max-points", "-3"], ["--max-points -3", ">= 1"]),
    ("plot2d", ["{a}", "--levels", "1"], ["--levels 1", ">= 2"]),
    ("plot1d", ["{missing}"], ["missing.pt", "does not exist"]),
    ("plot1d", ["--from", "{missing}"], ["missing.pt", "does not exist"]),
    ("plot1d", [], ["missing CHECKPOINT", "--from"]),
    ("plot2d", [], ["missing CHECKPOINT", "--from"]),
    ("plot1d", ["{a}", "--from", "{npz1d}"], ["either CHECKPOINT", "not both"]),
    ("plot2d", ["--from", "{npz1d}"], ["1D surface", "plot1d --from"]),
    ("plot1d", ["{a}", "--dir-type", "interpolation"], ["--to CKPT2"]),
    ("plot1d", ["{a}", "--to", "{b}", "--dir-type", "random"], ["--to CKPT2"]),
    ("plot2d", ["{a}", "--dir-type", "plane"], ["--ckpts B C"]),
    ("plot2d", ["{a}", "--dir-type", "pca"], ["--trajectory DIR"]),
    ("plot2d", ["{a}", "--trajectory", "{one}"], ["holds 1 checkpoint", "at least 2"]),
    ("plot1d", ["{a}", "--to", "{mlp}"], ["mlp.pt", "does not fit"]),
    ("plot1d", ["{mlp}", "--bn", "recalibrate"], ["bn='recalibrate'", "bn='fixed'"]),
    ("plot1d", ["{a}", "--precision", "fp8"], ["--precision fp8", "'float32', 'bfloat16', 'float16'"]),
    ("plot2d", ["{a}", "--precision", "half"], ["--precision half", "is not valid"]),
    (
        "plot2d",
        ["{a}", "--precision", "bfloat16", "--dtype", "float64"],
        ["--precision bfloat16 needs a float32 model", "float64", "--dtype=float32", "--precision float32"],
    ),
    (
        "plot1d",
        ["{a}", "--x", "0:1:2", "--seed", "5", "-o", "{made}"],
        ["a_random_1d.npz", "other settings", "-o/--out", "--name", "--overwrite"],
    ),
]


def _id(case: tuple[str, list[str], list[str]]) -> str:
    command, args, _ = case
    return "-".join([command, *(a.strip("{}-").replace(":", "_") for a in args)]) or command


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_bad_input_is_one_line_naming_value_and_fix(files, tmp_path, case):
    command, args, fragments = case
    out = tmp_path / "out"
    argv = [command, *COMMON, *(a.format(**files) for a in args)]  # the case's options win
    if "-o" not in args:
        argv += ["-o", str(out)]
    made_before = sorted(Path(files["made"]).iterdir())
    r = CliRunner().invoke(cli, argv, catch_exceptions=False)
    lines = r.output.strip().splitlines()
    assert r.exit_code == 1, r.output
    assert len(lines) == 1 and lines[0].startswith("error: "), r.output
    assert not lines[0].startswith("error: unexpected") and "Traceback" not in r.output
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    assert not out.exists(), "a refused command wrote its output folder"
    assert sorted(Path(files["made"]).iterdir()) == made_before


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("1:2", "MIN:MAX:NUM"),
        ("a:1:3", "MIN:MAX:NUM"),
        ("1:-1:3", "MIN must be"),
        ("0:1:0", "NUM=0"),
        ("0:1:1", "NUM=1"),
    ],
    ids=["two", "nan", "reversed", "zero", "single"],
)
def test_parse_range_errors(text, match):
    with pytest.raises(ConfigError, match=match):
        parse_range(text, "--x")


def test_parse_range_values():
    np.testing.assert_array_equal(parse_range("-1:1:5"), [-1.0, -0.5, 0.0, 0.5, 1.0])
    np.testing.assert_array_equal(parse_range("0.5:0.5:1"), [0.5])


@pytest.mark.parametrize(
    ("command", "message", "expected"),
    [
        (
            "plot1d",
            "to= goes with dir_type='interpolation' (and interpolation needs to=)",
            "--to CKPT2 goes with --dir-type interpolation (and interpolation needs --to CKPT2)",
        ),
        ("plot2d", "ckpts= needs exactly two checkpoints (B and C), got 3", "--ckpts B C needs exactly two"),
        ("plot2d", "trajectory='/tmp/one' holds 1 checkpoint(s)", "--trajectory '/tmp/one' holds 1"),
        (
            "plot2d",
            "bn='recalibrate' needs batch norm; use bn='fixed'",
            "bn='recalibrate' needs batch norm; use bn='fixed'",
        ),
        # what the command shows: batch_size is a flag of every command (the one table)
        ("plot1d", "batch_size=0 must be >= 1, up to=3", "--batch-size=0 must be >= 1, up --to 3"),
        (
            "plot1d",
            "precision='fp8' is not valid; use precision='float32'",
            "--precision fp8 is not valid; use --precision float32",
        ),
    ],
    ids=["to", "ckpts", "trajectory", "untouched", "word-boundary", "precision"],
)
def test_library_parameter_names_become_flags(command, message, expected):
    assert as_flags(message, command).startswith(expected)
