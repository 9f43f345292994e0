"""Reading one run folder: the late step statistics average the last tenth of the steps."""

from __future__ import annotations

import json
import math

import pytest

from landscape.runs import summarize_run
from landscape.runs.compare import Comparison
from landscape.runs.grouping import RunRecord, run_records


def _run(path, steps: list[str]):
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"optimizer": "sam", "rho": 0.05, "seed": 0}))
    (path / "metrics.csv").write_text(
        "epoch,step,train_loss,train_accuracy,test_loss,test_accuracy\n1,20,0.5,0.9,0.6,0.8\n"
    )
    (path / "steps.csv").write_text("\n".join(steps) + "\n")
    return path


def test_late_step_statistics_average_the_last_tenth(tmp_path):
    # moved from the demo's own late_step_stats: the demo reads runs as compare does
    lines = ["epoch,step,loss,lr,grad_norm_ratio,cosine,frac_larger"]
    lines += [f"1,{i},0.5,0.1,{i},{0.01 * i},{0.02 * i}" for i in range(1, 21)]
    got = summarize_run(_run(tmp_path / "sam", lines)).stats_late
    # last 10% of 20 steps = steps 19 and 20
    assert got["grad_norm_ratio"] == pytest.approx(19.5)
    assert got["cosine"] == pytest.approx(0.195)
    assert got["frac_larger"] == pytest.approx(0.39)
    sgd = summarize_run(_run(tmp_path / "sgd", ["epoch,step,loss,lr", "1,1,0.5,0.1"]))
    (record,) = run_records(Comparison(root=str(tmp_path), runs=[sgd]))
    assert isinstance(record, RunRecord)
    assert all(math.isnan(record.metrics[f"{k}_late"]) for k in ("grad_norm_ratio", "cosine", "frac_larger"))
