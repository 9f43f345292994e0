"""Issue 21 item 2: a diverged run is said to be one, and its zero curvature is flagged, not flat.

``train --lr 1e4`` on the MLP ends with a train loss ~1e7-1e23 times its start; its Hessian is exactly
zero (saturated softmax, piecewise-linear loss), which ``sharpness`` used to report as a converged
flat minimum.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from landscape.analysis.pipeline import SATURATED_SHARE, SaturationPass, degenerate_reason, saturation_pass
from landscape.analysis.result_file import SharpnessFile
from landscape.cli.main import cli
from landscape.objective.core import Objective

TRAIN = ["train", "--model", "mlp", "--samples", "128", "--batch-size", "64", "--epochs", "2", "-q"]
SHARPNESS = ["--top-k", "3", "--trace", "--samples", "128", "-q"]


def _invoke(args: list[str]):
    return CliRunner().invoke(cli, args)


@pytest.fixture(scope="module")
def diverged(tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("diverged") / "r"
    r = _invoke([*TRAIN, "--lr", "1e4", "-o", str(out)])
    assert r.exit_code == 0, r.output
    return out, r.output


@pytest.fixture(scope="module")
def healthy(tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("healthy") / "r"
    r = _invoke([*TRAIN, "--lr", "0.05", "-o", str(out)])
    assert r.exit_code == 0, r.output
    return out, r.output


def test_train_warns_and_records_a_diverged_run(diverged, healthy):
    out, output = diverged
    lines = [ln for ln in output.splitlines() if ln.startswith("warning:")]
    assert len(lines) == 1 and "diverged" in lines[0] and "--lr" in lines[0]  # the CLI's flag
    summary = json.loads((out / "summary.json").read_text())
    assert summary["diverged"] is True
    start = float(next(csv.DictReader((out / "metrics.csv").open()))["train_loss"])
    assert summary["final"]["train_loss"] > 10 * start
    out, output = healthy
    assert "warning:" not in output
    assert json.loads((out / "summary.json").read_text())["diverged"] is False


def test_sharpness_flags_the_zero_spectrum_of_a_diverged_run(diverged, tmp_path):
    run, _ = diverged
    r = _invoke(["sharpness", str(run / "final.pt"), *SHARPNESS, "-o", str(tmp_path / "s")])
    assert r.exit_code == 0, r.output
    first = r.output.splitlines()[0]
    assert first.startswith("WARNING") and "degenerate curvature" in first
    doc = json.loads((tmp_path / "s" / "sharpness.json").read_text())
    assert doc["eigenvalues"] == [0.0, 0.0, 0.0]  # what used to read as the flattest minimum
    assert doc["degenerate"].startswith("all-zero spectrum")
    assert SharpnessFile.from_dict(doc).result.degenerate == doc["degenerate"]


def test_a_healthy_run_is_not_degenerate_and_older_files_read_as_none(healthy, tmp_path):
    run, _ = healthy
    r = _invoke(["sharpness", str(run / "final.pt"), *SHARPNESS, "-o", str(tmp_path / "s")])
    assert r.exit_code == 0, r.output
    assert "WARNING" not in r.output and "degenerate" not in r.output
    doc = json.loads((tmp_path / "s" / "sharpness.json").read_text())
    assert doc["degenerate"] is None and doc["eigenvalues"][0] > 0
    del doc["degenerate"]  # a file written before the field
    assert SharpnessFile.from_dict(doc).result.degenerate is None


def test_track_sharpness_logs_the_degenerate_column(tmp_path):
    out = tmp_path / "r"
    r = _invoke([*TRAIN, "--lr", "1e4", "--track-sharpness", "4", "--track-samples", "64", "-o", str(out)])
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader((out / "sharpness.csv").open()))
    assert rows[0]["degenerate"] == ""  # the untrained weights are fine
    last = rows[-1]
    assert float(last["lambda_max"]) == 0.0 and last["degenerate"].startswith("all-zero spectrum")


def _saturating_objective(scale: float) -> Objective:
    torch.manual_seed(0)
    x, y = torch.randn(50, 4, dtype=torch.float64), torch.randint(0, 3, (50,))
    model = torch.nn.Linear(4, 3).double()
    with torch.no_grad():
        model.weight.mul_(scale)
    return Objective(model, (x, y), dtype=torch.float64)


def test_saturation_pass_counts_examples_at_probability_one():
    obj = _saturating_objective(1e4)
    sat = saturation_pass(obj)
    assert sat.loss == pytest.approx(obj.loss(), rel=1e-12)  # the loss of the same pass
    with torch.no_grad():
        top = torch.softmax(obj.model(obj.batches().__next__()[0]), dim=-1).amax(dim=-1)
    assert sat.saturated == pytest.approx(float((top >= 1 - 1e-6).double().mean()), abs=1e-12)
    assert sat.saturated >= SATURATED_SHARE
    assert saturation_pass(_saturating_objective(1e-2)).saturated == 0.0


def test_degenerate_reason_rules():
    eps = torch.finfo(torch.float32).eps
    fine = SaturationPass(loss=2.0, saturated=0.0)
    assert degenerate_reason([0.0, 0.0], fine, eps=eps, trace=0.0, num_params=10).startswith("all-zero")
    assert degenerate_reason([1e-3, 0.0], fine, eps=eps) is None  # real curvature
    assert degenerate_reason([0.0], fine, eps=eps, trace=1.0, num_params=10) is None  # the trace is not 0
    saturated = SaturationPass(loss=2.0, saturated=SATURATED_SHARE)
    assert degenerate_reason([5.0], saturated, eps=eps).startswith("saturated softmax")
    assert degenerate_reason([5.0], SaturationPass(loss=2.0, saturated=None), eps=eps) is None
