"""Bad input to ``evaluate``, ``sharpness`` and ``compare-magnitude``: one clear line naming the value
and the fix, exit status 1, never a traceback or "unexpected ..." (table-driven, through the CLI), and
``evaluate -o`` never replacing a result made with other settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from landscape.cli.main import cli
from landscape.data.datasets import DataSpec
from landscape.models.builders import ModelSpec, build_model
from landscape.models.checkpoints import save_checkpoint

torch.set_num_threads(1)

SMALL = ["--samples", "32", "--batch-size", "16", "--device", "cpu", "-q"]
METRICS = "epoch,step,train_loss,train_accuracy,test_loss,test_accuracy\n1,8,0.5,0.8,0.6,0.7\n"
STEPS = "epoch,step,grad_norm_ratio,cosine,frac_larger\n1,1,1.1,0.9,0.5\n"


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    """A good and a NaN checkpoint of a tiny MLP, a plain file, and run folders (good and damaged)."""
    root = tmp_path_factory.mktemp("bad_input")
    spec = ModelSpec("mlp", {"hidden": [4]})
    torch.manual_seed(0)
    model = build_model("mlp", hidden=[4])
    save_checkpoint(root / "mlp.pt", model, model_spec=spec, data_spec=DataSpec("digits"))
    with torch.no_grad():
        model.net[3].bias[2] = float("nan")
    save_checkpoint(root / "nan.pt", model, model_spec=spec, data_spec=DataSpec("digits"))
    (root / "a_file").write_text("not a folder\n")
    damaged = {
        "metrics-not-numbers": {"metrics.csv": "epoch,step\n1,4\nfoo,bar\n"},
        "metrics-bad-accuracy": {"metrics.csv": METRICS.replace("0.7", "0.7x")},
        "metrics-binary": {"metrics.csv": b"\x00\xff\xfe\x00garbage"},
        "steps-not-numbers": {"steps.csv": "epoch,step\n1.5,x\n"},
        "config-not-json": {"config.json": "{broken"},
    }
    for name, broken in damaged.items():
        run = root / "runs" / name / "run"
        run.mkdir(parents=True)
        for fname, text in {
            "config.json": '{"optimizer": "sgd"}',
            "metrics.csv": METRICS,
            "steps.csv": STEPS,
            **broken,
        }.items():
            if isinstance(text, bytes):
                (run / fname).write_bytes(text)
            else:
                (run / fname).write_text(text)
    return root


def _expand(args: list[str], root: Path) -> list[str]:
    return [a.replace("{root}", str(root)) for a in args]


# (id, arguments, what the one line must contain); {root} is the fixture folder
CASES = [
    # --batch-size (was "unexpected ValueError: range() arg 3 must not be zero" / "the dataset is empty")
    (
        "evaluate-batch-size-0",
        ["evaluate", "{root}/mlp.pt", "--batch-size", "0"],
        "--batch-size 0 must be a positive",
    ),
    (
        "evaluate-batch-size-neg",
        ["evaluate", "{root}/mlp.pt", "--batch-size", "-4"],
        "--batch-size -4 must be a positive",
    ),
    (
        "sharpness-batch-size-0",
        ["sharpness", "{root}/mlp.pt", "--batch-size", "0"],
        "--batch-size 0 must be a positive",
    ),
    (
        "sharpness-batch-size-neg",
        ["sharpness", "{root}/mlp.pt", "--batch-size", "-4"],
        "--batch-size -4 must be a positive",
    ),
    # -o naming an existing file (was "unexpected NotADirectoryError" / "FileExistsError")
    (
        "evaluate-out-file",
        ["evaluate", "{root}/mlp.pt", *SMALL[:-1], "-o", "{root}/a_file"],
        "is an existing file, not a folder",
    ),
    (
        "sharpness-out-file",
        ["sharpness", "{root}/mlp.pt", *SMALL, "-o", "{root}/a_file"],
        "is an existing file, not a folder",
    ),
    # NaN weights (was "unexpected LinAlgError: Eigenvalues did not converge")
    (
        "sharpness-nan-weights",
        ["sharpness", "{root}/nan.pt", *SMALL],
        "tensor 'net.3.bias' holds 1 of 10 values that are NaN or Inf",
    ),
    # option combinations of sharpness
    ("top-k-0", ["sharpness", "{root}/mlp.pt", *SMALL, "--top-k", "0"], "top_k=0 must be > 0"),
    (
        "top-k-too-many",
        ["sharpness", "{root}/mlp.pt", *SMALL, "--top-k", "5000"],
        "top_k=5000 is more than the 310 parameters",
    ),
    (
        "max-matvecs",
        ["sharpness", "{root}/mlp.pt", *SMALL, "--max-matvecs", "2"],
        "max_matvecs=2 must be at least top_k=5",
    ),
    ("tol-0", ["sharpness", "{root}/mlp.pt", *SMALL, "--tol", "0"], "tol=0.0 must be > 0"),
    (
        "trace-matvecs",
        ["sharpness", "{root}/mlp.pt", *SMALL, "--trace", "--trace-matvecs", "2"],
        "trace_matvecs=2 is too small for trace_method='hutch++'",
    ),
    (
        "trace-rtol",
        ["sharpness", "{root}/mlp.pt", *SMALL, "--trace-rtol", "-1"],
        "trace_rtol=-1.0 must be > 0",
    ),
    (
        "xtrace-rtol",
        ["sharpness", "{root}/mlp.pt", *SMALL, "--trace-method", "xtrace", "--trace-rtol", "0.1"],
        "trace_rtol is not available with trace_method='xtrace'",
    ),
    (
        "density-runs",
        ["sharpness", "{root}/mlp.pt", *SMALL, "--density", "--density-runs", "0"],
        "density_runs=0 must be > 0",
    ),
    (
        "density-steps",
        ["sharpness", "{root}/mlp.pt", *SMALL, "--density", "--density-steps", "0"],
        "density_steps=0 must be > 0",
    ),
    ("per-batch", ["sharpness", "{root}/mlp.pt", *SMALL, "--per-batch", "0"], "per_batch=0 must be > 0"),
    (
        "pyhessian-SA",
        ["sharpness", "{root}/mlp.pt", *SMALL, "--which", "SA", "--backend", "pyhessian"],
        "which='SA' is not available with backend='pyhessian'",
    ),
    # already handled: missing checkpoint, bad JSON, unknown data, no CUDA
    ("sharpness-missing", ["sharpness", "{root}/none.pt"], "does not exist"),
    ("evaluate-missing", ["evaluate", "{root}/none.pt"], "does not exist"),
    (
        "model-kwargs",
        ["sharpness", "{root}/mlp.pt", "--model-kwargs", "{"],
        "--model-kwargs is not valid JSON",
    ),
    ("unknown-data", ["evaluate", "{root}/mlp.pt", "--data", "nosuch"], "unknown dataset 'nosuch'"),
    # compare-magnitude (was: names a nonexistent --subset; corrupt files without their name)
    (
        "sharpness-neg",
        ["compare-magnitude", "{root}/runs", "--sharpness", "-5"],
        "--sharpness -5 must be a positive number",
    ),
    (
        "sharpness-0",
        ["compare-magnitude", "{root}/runs", "--sharpness", "0"],
        "--sharpness 0 must be a positive number",
    ),
    ("compare-tol", ["compare-magnitude", "{root}/runs", "--tol", "0"], "--tol 0.0 must be > 0"),
    (
        "metrics-not-numbers",
        ["compare-magnitude", "{root}/runs/metrics-not-numbers"],
        "metrics-not-numbers/run/metrics.csv' line 3: epoch='foo' is not a whole number",
    ),
    (
        "metrics-bad-accuracy",
        ["compare-magnitude", "{root}/runs/metrics-bad-accuracy"],
        "metrics-bad-accuracy/run/metrics.csv' line 2: test_accuracy='0.7x' is not a number",
    ),
    ("metrics-binary", ["compare-magnitude", "{root}/runs/metrics-binary"], "metrics-binary/run/metrics.csv"),
    (
        "steps-not-numbers",
        ["compare-magnitude", "{root}/runs/steps-not-numbers"],
        "steps-not-numbers/run/steps.csv' line 2: epoch='1.5' is not a whole number",
    ),
    (
        "config-not-json",
        ["compare-magnitude", "{root}/runs/config-not-json"],
        "config-not-json/run/config.json'",
    ),
    ("runs-missing", ["compare-magnitude", "{root}/nowhere"], "does not exist or is not a directory"),
    (
        "from-not-comparison",
        ["compare-magnitude", "{root}/runs", "--from", "{root}/a_file"],
        "is not a comparison.json",
    ),
]


@pytest.mark.parametrize(("args", "match"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_gives_one_clear_line(files: Path, args: list[str], match: str) -> None:
    r = CliRunner().invoke(cli, _expand(args, files))
    assert r.exit_code == 1, r.output
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.stderr
    assert match in r.stderr, r.stderr
    assert "unexpected" not in r.stderr and "Traceback" not in r.stderr


def test_bad_batch_size_through_a_real_process(files: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "landscape", "sharpness", str(files / "mlp.pt"), "--batch-size", "0"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr == (
        "error: --batch-size 0 must be a positive number of examples per batch, e.g. --batch-size 256\n"
    )


def test_evaluate_refuses_a_result_made_with_other_settings(files: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    first = ["evaluate", str(files / "mlp.pt"), *SMALL[:-1], "-o", str(out)]
    r = CliRunner().invoke(cli, first)
    assert r.exit_code == 0, r.output
    before = (out / "evaluation.json").read_bytes()
    assert CliRunner().invoke(cli, first).exit_code == 0  # the same settings: a rerun
    r = CliRunner().invoke(cli, [*first, "--split", "test"])
    assert r.exit_code == 1 and r.stderr.count("\n") == 1
    assert "made with other settings (differs in: data)" in r.stderr and "--overwrite" in r.stderr
    assert (out / "evaluation.json").read_bytes() == before
    r = CliRunner().invoke(cli, ["evaluate", str(files / "nan.pt"), *SMALL[:-1], "-o", str(out)])
    assert r.exit_code == 1 and "differs in: checkpoint_digest" in r.stderr
    r = CliRunner().invoke(cli, [*first, "--split", "test", "--overwrite"])
    assert r.exit_code == 0, r.output
    doc = json.loads((out / "evaluation.json").read_text())
    assert doc["data"]["split"] == "test" and doc["settings"]["data"]["split"] == "test"
    (out / "evaluation.json").write_text('{"loss": 1.0}')  # made before settings were recorded
    r = CliRunner().invoke(cli, first)
    assert r.exit_code == 1 and "without its settings" in r.stderr and "--overwrite" in r.stderr
