"""``landscape sweep``: the plan, running and skipping, bad input as one line, the process argv."""

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
from landscape.models.builders import ModelSpec
from landscape.training import TrainConfig
from landscape.training.sweep import plan_runs, plan_sweep
from landscape.training.sweep_worker import job_document, run_job

TINY = ["--model", "mlp", "--model-kwargs", '{"hidden": [8]}', "--samples", "64", "--batch-size", "32"]


def _invoke(*args: str):
    return CliRunner().invoke(cli, ["sweep", *args], catch_exceptions=False)


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path: Path):
    out = tmp_path / "runs"
    res = _invoke(
        "-o",
        str(out),
        "--optimizer",
        "sgd,sam-direction",
        "--decomposition",
        "global,elementwise",
        "--rho",
        "0.05",
        "--seeds",
        "0,1",
        *TINY,
        "--dry-run",
    )
    assert res.exit_code == 0, res.output
    assert res.output.splitlines() == [
        "[1/6] new    sgd_seed0  (optimizer=sgd seed=0)",
        "[2/6] new    sgd_seed1  (optimizer=sgd seed=1)",
        "[3/6] new    sam-direction_global_rho0.05_seed0  (optimizer=sam-direction decomposition=global rho=0.05 seed=0)",
        "[4/6] new    sam-direction_global_rho0.05_seed1  (optimizer=sam-direction decomposition=global rho=0.05 seed=1)",
        "[5/6] new    sam-direction_elementwise_rho0.05_seed0  (optimizer=sam-direction decomposition=elementwise rho=0.05 seed=0)",
        "[6/6] new    sam-direction_elementwise_rho0.05_seed1  (optimizer=sam-direction decomposition=elementwise rho=0.05 seed=1)",
    ]
    assert not out.exists()


def test_sweep_runs_then_skips_on_rerun(tmp_path: Path):
    out = tmp_path / "runs"
    args = ["-o", str(out), "--optimizer", "sgd,sam", "--rho", "0.1", "--seeds", "0", *TINY, "--epochs", "1"]
    first = _invoke(*args)
    assert first.exit_code == 0, first.output
    assert first.output.splitlines()[0].startswith("[1/2] sgd_seed0: finished in")
    assert "2 trained, 0 skipped, 0 failed" in first.output
    assert json.loads((out / "sam_rho0.1_seed0" / "config.json").read_text())["rho"] == 0.1
    again = _invoke(*args, "--json")
    assert again.exit_code == 0
    doc = json.loads(again.stdout)
    assert doc["trained"] == {} and doc["skipped"] == ["sgd_seed0", "sam_rho0.1_seed0"]
    plan = _invoke(*args, "--dry-run")
    assert [line.split()[1] for line in plan.output.splitlines()] == ["done", "done"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--optimizer", "sgd,lbfgs"], "error: --optimizer: 'lbfgs' is not valid; choose from sgd, adam"),
        (
            ["--optimizer", "sam", "--rho", "-0.1"],
            "error: --rho: -0.1 is not valid; a radius must be a finite number >= 0",
        ),
        (["--optimizer", "sam", "--seeds", ","], "error: --seeds is empty; give at least one value"),
        (["--optimizer", "sam", "--jobs", "0"], "error: --jobs=0 must be > 0"),
        (
            ["--optimizer", "sam-magnitude", "--decomposition", "sign"],
            "error: --decomposition: 'sign' is not valid",
        ),
        (
            ["--optimizer", "sam", "--opt-kwargs", '{"decomposition": "global"}'],
            "error: --opt-kwargs must not hold 'decomposition'",
        ),
    ],
    ids=[
        "unknown-optimizer",
        "negative-rho",
        "empty-seeds",
        "zero-jobs",
        "bad-decomposition",
        "dec-in-kwargs",
    ],
)
def test_bad_input_is_one_line(tmp_path: Path, args, message):
    res = CliRunner().invoke(cli, ["sweep", "-o", str(tmp_path / "r"), *args])
    assert res.exit_code == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), res.stderr
    assert not (tmp_path / "r").exists()


def test_unparsable_list_is_a_usage_error(tmp_path: Path):
    res = CliRunner().invoke(cli, ["sweep", "-o", str(tmp_path), "--optimizer", "sam", "--rho", "0.1,x"])
    assert res.exit_code == 2 and "'x' is not a number" in res.output


def test_process_job_makes_exactly_the_planned_run(tmp_path: Path):
    """What a ``--jobs`` process runs (the worker's job: the planned TrainConfig) records the config the
    sweep expects."""
    base = TrainConfig(
        model=ModelSpec("mlp", {"hidden": [8]}),
        data=DataSpec("digits", split="train", subset=64),
        lr=0.2,
        momentum=0.5,
        weight_decay=1e-3,
        batch_size=32,
        epochs=1,
        save_every=1,
    )
    (planned,) = plan_runs(
        tmp_path, base, plan_sweep(["sam-magnitude"], [4], decompositions=["elementwise"], rhos=[0.3])
    )
    job = job_document(planned.config, planned.out_dir, device="cpu", dtype=torch.float32)
    metrics = run_job(json.loads(job))
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    (replanned,) = plan_runs(tmp_path, base, [planned.point])
    assert replanned.status == "done"  # the saved config.json is the planned one


@pytest.mark.slow
def test_real_subprocess_with_two_jobs(tmp_path: Path):
    out = tmp_path / "runs"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    cmd = [sys.executable, "-m", "landscape", "sweep", "-o", str(out), "--optimizer", "sgd", "--seeds", "0,1"]
    proc = subprocess.run(
        [*cmd, *TINY, "--epochs", "1", "--jobs", "2"], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert "2 trained, 0 skipped, 0 failed" in proc.stdout
    assert all((out / f"sgd_seed{s}" / "summary.json").is_file() for s in (0, 1))
