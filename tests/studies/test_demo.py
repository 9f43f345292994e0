"""The demo: run grid, statistics against hand-computed values, the report writer, and `demo --quick`."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from landscape.errors import ConfigError, ResultFileError
from landscape.studies.demo import _check_settings
from landscape.studies.demo_plan import DemoSettings, RunPoint, comparison_pairs, demo_settings, plan_runs

ROOT = Path(__file__).resolve().parents[1]


# -- the grid of runs ----------------------------------------------------------------------------
def test_full_plan_is_the_seed_study_grid():
    points = plan_runs(demo_settings())
    assert len(points) == 3 + 2 * 3 + 2 * 2 * 2 * 3 == 33
    assert len({p.name for p in points}) == 33
    assert all(p.rho is None and p.decomposition is None for p in points if p.optimizer == "sgd")
    assert all(p.decomposition is None for p in points if p.optimizer == "sam")
    assert {p.decomposition for p in points if p.optimizer == "sam-magnitude"} == {"global", "elementwise"}
    assert {p.rho for p in points if p.optimizer != "sgd"} == {0.05, 0.2}
    assert RunPoint("sam-direction", 0.05, "global", 2).name == "sam-direction_global_rho0.05_s2"
    assert RunPoint("sam-direction", 0.05, "global", 2).group == "SAM-direction (global) rho=0.05"


def test_quick_plan_keeps_every_method_and_two_seeds():
    s = demo_settings(quick=True)
    points = plan_runs(s)
    assert {p.optimizer for p in points} == {"sgd", "sam", "sam-direction", "sam-magnitude"}
    assert {p.seed for p in points} == {0, 1} and len(points) == 8
    mnist = demo_settings("mnist1d", quick=True)
    assert mnist.data_name == "landscape.data.mnist1d:mnist1d_dataset"
    with pytest.raises(ConfigError, match="data='cifar10'"):
        demo_settings("cifar10")
    shifted = demo_settings(seed=5)
    assert shifted.seeds == (5, 6, 7) and shifted.analysis_seed == 5
    with pytest.raises(ConfigError, match="seed=-1"):
        demo_settings(seed=-1)


def test_comparison_pairs():
    pairs = comparison_pairs(demo_settings())
    mag_dir = [p for p in pairs if p[1].startswith("SAM-direction")]
    assert len(mag_dir) == 4  # 2 rho x 2 decompositions
    assert ("SAM-magnitude (elementwise) rho=0.2", "SAM-direction (elementwise) rho=0.2") in mag_dir
    assert sum(b == "SGD" for _, b in pairs) == 2 + 4 + 4


def test_other_settings_in_the_same_folder_are_refused(tmp_path):
    _check_settings(tmp_path, demo_settings(quick=True))
    _check_settings(tmp_path, demo_settings(quick=True))  # same settings: fine
    with pytest.raises(ResultFileError, match="other settings.*epochs.*use another out_dir"):
        _check_settings(tmp_path, demo_settings(quick=False))


@pytest.mark.parametrize(
    "settings",
    [
        demo_settings(),
        demo_settings(quick=True, seed=4),
        demo_settings("mnist1d"),
        demo_settings("text", quick=True),
    ],
    ids=["full", "quick-seed4", "mnist1d", "text-quick"],
)
def test_settings_round_trip_as_json(settings):
    text = json.dumps(settings.to_dict())  # as demo.json holds them
    assert settings.to_dict()["rhos"] == list(settings.rhos)
    back = DemoSettings.from_dict(json.loads(text))
    assert back == settings and isinstance(back.rhos, tuple) and isinstance(back.seeds, tuple)
    assert plan_runs(back) == plan_runs(settings)


def test_text_settings_are_recorded_and_the_others_keep_their_demo_json_keys():
    text = demo_settings("text").to_dict()
    assert text["data_kwargs"] == {"seq_len": 32} and text["train_samples"] == 1024
    assert text["model"]["name"] == "gpt-tiny"
    for data in ("digits", "mnist1d"):  # a demo folder made before the text demo still resumes
        assert not {"data_kwargs", "train_samples"} & set(demo_settings(data).to_dict())


# -- end to end ------------------------------------------------------------------------------------
def _demo(out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
    cmd = [sys.executable, "-m", "landscape", "demo", "--quick", "-o", str(out), "--device", "cpu", *extra]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_demo_quick_end_to_end_and_resume(tmp_path):
    out = tmp_path / "demo"
    proc = _demo(out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert str(out / "report.html") in proc.stdout and "[8/8]" in proc.stdout
    md = (out / "report.md").read_text()
    # the finding is stated in numbers with intervals
    assert re.search(
        r"lambda_max: SAM-magnitude \(global\) rho=0\.2 - SAM-direction \(global\) rho=0\.2 = "
        r"-?[\d.e+-]+ \[-?[\d.e+-]+, -?[\d.e+-]+\] \(paired over seeds 0 1, n=2\)",
        md,
    )
    assert "lambda_max: SAM rho=0.2 - SGD = " in md
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 6 and "<img" in page and 'src="figures' not in page
    with open(out / "groups.csv", newline="") as fh:
        groups = list(csv.DictReader(fh))
    assert [g["group"] for g in groups][0] == "SGD" and len(groups) == 4
    for g in groups:
        assert g["n"] == "2"
        low, mean, high = (float(g[f"lambda_max_{k}"]) for k in ("ci95_low", "mean", "ci95_high"))
        assert low <= mean <= high and mean > 0
    with open(out / "runs.csv", newline="") as fh:
        runs = list(csv.DictReader(fh))
    assert len(runs) == 8 and all(np.isfinite(float(r["trace"])) for r in runs)
    # sharpness beyond the Hessian: each run's value is the one its sharpness.json holds
    for r in runs:
        stored = json.loads((out / "runs" / r["run"] / "sharpness.json").read_text())["measures"]
        for name in ("average", "worst"):
            assert float(r[f"sharpness_{name}"]) == pytest.approx(stored[name]["value"], rel=1e-9)
    assert "sharpness_average: SAM rho=0.2 - SGD = " in md
    # the same command again: every stage is found on disk, nothing is retrained
    again = _demo(out)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "[1/8]" not in again.stdout
    assert (out / "report.md").read_text().split("## Settings")[0] == md.split("## Settings")[0]
    # another configuration in the same folder: one line naming the flag, exit 1 (in-process: fast)
    from click.testing import CliRunner

    from landscape.cli.main import cli

    other = CliRunner().invoke(cli, ["demo", "--quick", "-o", str(out), "--data", "mnist1d"])
    assert other.exit_code == 1
    assert other.output.strip().count("\n") == 0 and "use another -o/--out" in other.output
    # an interrupted analysis: a lost sharpness file and surface are recomputed, nothing is retrained
    from landscape.studies.demo import run_demo

    before = {r["run"]: r for r in runs}
    (out / "runs" / "sgd_s1" / "sharpness.json").unlink()
    (out / "surfaces" / "sgd_to_sam.npz").unlink()
    lines: list[str] = []
    result = run_demo(out, demo_settings(quick=True), device="cpu", log=lines.append)
    assert not any("[" in line and "test accuracy" in line for line in lines)
    assert (out / "runs" / "sgd_s1" / "sharpness.json").is_file() and (
        out / "surfaces" / "sgd_to_sam.npz"
    ).is_file()
    again_row = next(r for r in result.rows if r["run"] == "sgd_s1")
    assert again_row["lambda_max"] == pytest.approx(float(before["sgd_s1"]["lambda_max"]), rel=1e-6)
