"""``landscape sharpness``: the JSON contract, files written, errors (through CliRunner and once
through a real subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cli.main import cli
from landscape.hessian import top_eigenpairs
from landscape.io.loading import objective_from_checkpoint

torch.set_num_threads(1)  # tiny problems: threads only contend with other test workers

BASE = ["--samples", "48", "--batch-size", "20", "--dtype", "float64", "--device", "cpu", "--tol", "1e-9"]
CONTRACT = {
    "eigenvalues",
    "residuals",
    "trace",
    "matvecs",
    "samples",
    "seed",
    "device",
    "dtype",
    "bn_mode",
    "seconds",
}


def _run(args: list[str]) -> tuple[int, str, str]:
    res = CliRunner().invoke(cli, args)
    return res.exit_code, res.stdout, res.stderr


def test_json_contract_and_values(cnn_checkpoint, tmp_path) -> None:
    out = tmp_path / "out"
    code, stdout, stderr = _run(
        [
            "sharpness",
            str(cnn_checkpoint),
            *BASE,
            "--top-k",
            "3",
            "--trace",
            "--trace-matvecs",
            "30",
            "--json",
            "-o",
            str(out),
        ]
    )
    assert code == 0, stderr
    doc = json.loads(stdout)
    assert set(doc) >= CONTRACT
    assert json.loads((out / "sharpness.json").read_text()) == doc
    ev = doc["eigenvalues"]
    assert len(ev) == 3 and ev == sorted(ev, reverse=True)
    assert set(doc["trace"]) >= {"estimate", "stderr", "matvecs", "method"}
    assert doc["trace"]["method"] == "hutch++" and doc["trace"]["matvecs"] == 30
    assert doc["matvecs"] == doc["eigen_matvecs"] + 30
    assert (doc["samples"], doc["seed"], doc["device"], doc["dtype"], doc["bn_mode"]) == (
        48,
        0,
        "cpu",
        "float64",
        "eval",
    )
    obj, _, _ = objective_from_checkpoint(
        cnn_checkpoint, samples=48, batch_size=20, device="cpu", dtype=torch.float64
    )
    ref = top_eigenpairs(obj, 3, tol=1e-10)
    np.testing.assert_allclose(ev, ref.eigenvalues, rtol=1e-8)


def test_table_density_and_per_layer(cnn_checkpoint, tmp_path) -> None:
    code, stdout, stderr = _run(
        [
            "sharpness",
            str(cnn_checkpoint),
            *BASE,
            "--top-k",
            "1",
            "--density",
            "--density-runs",
            "2",
            "--density-steps",
            "8",
            "--per-layer",
            "--per-layer-by",
            "module",
            "--per-batch",
            "2",
            "-o",
            str(tmp_path),
        ]
    )
    assert code == 0, stderr
    assert "lambda_1" in stdout and "per-batch (2 x 20)" in stdout and "matvecs" in stdout
    with np.load(tmp_path / "density.npz") as z:
        assert z["nodes"].shape == (2, 8)
        assert np.trapezoid(z["density"], z["grid"]) == pytest.approx(1.0, abs=1e-6)
    assert (tmp_path / "density.png").stat().st_size > 0
    doc = json.loads((tmp_path / "sharpness.json").read_text())
    assert doc["trace"] is None
    assert [e["name"] for e in doc["per_layer"]["layers"]][0].startswith("features.")
    assert len(doc["per_batch"]["eigenvalues"]) == 2


def test_pyhessian_backend(cnn_checkpoint) -> None:
    pytest.importorskip("pyhessian")
    code, stdout, stderr = _run(
        [
            "sharpness",
            str(cnn_checkpoint),
            *BASE,
            "--top-k",
            "1",
            "--tol",
            "1e-4",
            "--backend",
            "pyhessian",
            "--json",
        ]
    )
    assert code == 0, stderr
    doc = json.loads(stdout)
    assert doc["backend"] == "pyhessian" and doc["eigen_matvecs"] >= 2
    assert doc["residuals"] == [None]  # power iteration reports no Ritz residual


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--top-k", "0"], "top_k=0"),
        (["--trace-rtol", "-1"], "trace_rtol=-1"),
        (["--samples", "0"], "--samples 0"),
    ],
    ids=["top-k", "trace-rtol", "samples"],
)
def test_bad_options_give_one_line_error(cnn_checkpoint, args: list[str], match: str) -> None:
    code, _, stderr = _run(["sharpness", str(cnn_checkpoint), "--device", "cpu", *args])
    assert code == 1
    assert stderr.startswith("error: ") and match in stderr and stderr.count("\n") == 1


def test_subprocess_json(cnn_checkpoint) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", "sharpness", str(cnn_checkpoint), *BASE, "--top-k", "2", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert len(doc["eigenvalues"]) == 2 and doc["samples"] == 48
