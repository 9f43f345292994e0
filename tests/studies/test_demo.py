"""The demo: run grid, statistics against hand-computed values, the report writer, and `demo --quick`."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from landscape.errors import ConfigError, ResultFileError
from landscape.studies.demo import (
    DemoSettings,
    RunPoint,
    _check_settings,
    comparison_pairs,
    demo_settings,
    group_table,
    mean_ci,
    paired_differences,
    plan_runs,
)
from landscape.studies.demo_report import Report, fmt_interval, verdict

ROOT = Path(__file__).resolve().parents[1]
T_975_3 = 3.182446305284263  # Student t quantile, 97.5%, 3 degrees of freedom (table value)
T_975_2 = 4.302652729749464  # ... 2 degrees of freedom
T_975_1 = 12.706204736174698  # ... 1 degree of freedom


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


# -- statistics ----------------------------------------------------------------------------------
def test_mean_ci_against_hand_computed_values():
    s = mean_ci([1.0, 2.0, 3.0, 4.0])
    std = math.sqrt(5.0 / 3.0)  # sum of squares 5 over n - 1 = 3
    half = T_975_3 * std / 2.0
    assert s["n"] == 4
    assert s["mean"] == pytest.approx(2.5, abs=1e-15)
    assert s["std"] == pytest.approx(std, rel=1e-14)
    assert s["ci95_low"] == pytest.approx(2.5 - half, rel=1e-12)
    assert s["ci95_high"] == pytest.approx(2.5 + half, rel=1e-12)
    two = mean_ci([1.0, 3.0, float("nan")])  # NaN dropped
    assert two["n"] == 2 and two["ci95_high"] == pytest.approx(2.0 + T_975_1 * math.sqrt(2) / math.sqrt(2))
    one = mean_ci([5.0])
    assert one["mean"] == 5.0 and math.isnan(one["std"]) and math.isnan(one["ci95_low"])


def _rows():
    rows = []
    values = {"SGD": [10.0, 12.0, 11.0], "SAM rho=0.05": [7.0, 10.0, 7.0]}
    for group, vals in values.items():
        for seed, v in enumerate(vals):
            rows.append(
                {
                    "group": group,
                    "optimizer": "sgd" if group == "SGD" else "sam",
                    "decomposition": "",
                    "rho": "" if group == "SGD" else 0.05,
                    "seed": seed,
                    "lambda_max": v,
                    "trace": 10 * v,
                    "test_accuracy": 0.9,
                    "test_loss": 0.3,
                    "train_loss": 0.1,
                }
            )
    return rows


def test_group_table_and_paired_differences_by_seed():
    rows = _rows()
    table = group_table(rows)
    assert [g["group"] for g in table] == ["SGD", "SAM rho=0.05"]
    sgd = table[0]
    assert sgd["n"] == 3 and sgd["lambda_max_mean"] == pytest.approx(11.0)
    assert sgd["lambda_max_std"] == pytest.approx(1.0)
    assert set(sgd) >= {"lambda_max_ci95_low", "lambda_max_ci95_high", "test_accuracy_std"}
    paired = paired_differences(rows, [("SAM rho=0.05", "SGD")])
    lam = next(p for p in paired if p["metric"] == "lambda_max")
    # differences by seed: -3, -2, -4 -> mean -3, std 1
    assert lam["n"] == 3 and lam["mean"] == pytest.approx(-3.0) and lam["std"] == pytest.approx(1.0)
    assert lam["ci95_high"] == pytest.approx(-3.0 + T_975_2 / math.sqrt(3), rel=1e-12)
    assert verdict(lam["ci95_low"], lam["ci95_high"]).startswith("negative")
    # unpaired (independent) groups would give a wider interval: pairing is what makes it exclude 0
    assert paired_differences(rows, [("SAM rho=0.05", "missing")]) == []


def test_late_step_statistics_average_the_last_tenth(tmp_path):
    from landscape.studies.demo import late_step_stats

    lines = ["epoch,step,loss,lr,grad_norm_ratio,cosine,frac_larger"]
    lines += [f"1,{i},0.5,0.1,{i},{0.01 * i},{0.02 * i}" for i in range(1, 21)]
    (tmp_path / "steps.csv").write_text("\n".join(lines) + "\n")
    got = late_step_stats(tmp_path / "steps.csv")
    # last 10% of 20 steps = steps 19 and 20
    assert got["grad_norm_ratio_late"] == pytest.approx(19.5)
    assert got["cosine_late"] == pytest.approx(0.195)
    assert got["frac_larger_late"] == pytest.approx(0.39)
    (tmp_path / "sgd.csv").write_text("epoch,step,loss,lr\n1,1,0.5,0.1\n")
    assert all(math.isnan(v) for v in late_step_stats(tmp_path / "sgd.csv").values())


def test_other_settings_in_the_same_folder_are_refused(tmp_path):
    _check_settings(tmp_path, demo_settings(quick=True))
    _check_settings(tmp_path, demo_settings(quick=True))  # same settings: fine
    with pytest.raises(ResultFileError, match="other settings.*epochs.*use another out_dir"):
        _check_settings(tmp_path, demo_settings(quick=False))


def test_settings_round_trip_as_json():
    s = demo_settings()
    assert isinstance(s, DemoSettings) and s.to_dict()["rhos"] == [0.05, 0.2]


# -- the report writer ---------------------------------------------------------------------------
def test_report_markdown_and_self_contained_html(tmp_path):
    from matplotlib.figure import Figure

    from landscape.io.atomic import save_figure

    fig = Figure(figsize=(1, 1))
    fig.add_subplot().plot([0, 1], [1, 0])
    save_figure(fig, tmp_path / "figures" / "f.png")
    rep = Report("title <x>")
    rep.heading("Finding")
    rep.paragraph("a < b & c")
    rep.bullets(["one", "two"])
    rep.table(["name", "value"], [["a|b", fmt_interval(1.0, 0.5, 1.5)]])
    rep.figure("figures/f.png", "a figure")
    paths = rep.write(tmp_path)
    md = paths["report.md"].read_text()
    assert "| a\\|b | 1 [0.5, 1.5] |" in md
    assert "![a figure](figures/f.png)" in md and "## Finding" in md
    page = paths["report.html"].read_text()
    assert "a &lt; b &amp; c" in page and "<title>title &lt;x&gt;</title>" in page
    assert page.count('src="data:image/png;base64,') == 1
    assert "figures/f.png" not in page  # nothing links outside the file
    assert not list(tmp_path.glob(".*tmp*"))


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
