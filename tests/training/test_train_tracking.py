"""``landscape train --track-sharpness``: the series, its resume, its thresholds, its figure."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from click.testing import CliRunner

from landscape.cli.main import cli
from landscape.data.datasets import DataSpec
from landscape.models.builders import ModelSpec
from landscape.training import TrainConfig, train

MLP = ModelSpec("mlp", {"hidden": [8], "activation": "tanh"})


def _config(**kw) -> TrainConfig:
    settings = {"batch_size": 16, "epochs": 3, "seed": 4, "lr": 0.1, "track_sharpness": 3, **kw}
    return TrainConfig(model=MLP, data=DataSpec("digits", subset=64, seed=4), **settings)


def _rows(path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


class _StopError(Exception):
    pass


def test_tracked_value_at_the_last_step_equals_landscape_sharpness_of_final(tmp_path):
    runner = CliRunner()
    run = tmp_path / "run"
    r = runner.invoke(
        cli,
        [
            "train",
            "--model",
            "mlp",
            "--model-kwargs",
            '{"hidden": [8]}',
            "--samples",
            "64",
            "--seed",
            "4",
            "--batch-size",
            "16",
            "--epochs",
            "2",
            "--track-sharpness",
            "3",
            "-q",
            "--json",
            "-o",
            str(run),
        ],
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["sharpness_figure"] == str(run / "sharpness.png")
    assert (run / "sharpness.png").stat().st_size > 0
    rows = _rows(run / "sharpness.csv")
    assert [int(x["step"]) for x in rows] == [0, 3, 6, 8]  # every 3 steps and the last (2 x 4 steps)
    saved = json.loads((run / "config.json").read_text())
    assert saved["track_samples"] == 64 and saved["track_sharpness"] == 3
    r = runner.invoke(
        cli,
        [
            "sharpness",
            str(run / "final.pt"),
            "--data",
            "digits",
            "--samples",
            "64",
            "--seed",
            "4",
            "--top-k",
            "1",
            "--json",
            "-o",
            str(tmp_path / "sharp"),
        ],
    )
    assert r.exit_code == 0, r.output
    measured = json.loads(r.output)
    lam = measured["eigenvalues"][0] if "eigenvalues" in measured else measured["lambda_max"]
    assert float(rows[-1]["lambda_max"]) == pytest.approx(lam, rel=1e-4)


def test_resumed_tracking_continues_the_same_series(tmp_path):
    cfg = _config(epochs=3, track_top_k=2, track_overlap=True)
    train(cfg, tmp_path / "full", quiet=True)

    def stop_after_first(epoch, metrics):
        if epoch == 1:
            raise _StopError

    with pytest.raises(_StopError):
        train(cfg, tmp_path / "cut", quiet=True, on_epoch=stop_after_first)
    assert [int(r["step"]) for r in _rows(tmp_path / "cut" / "sharpness.csv")] == [0, 3]
    train(cfg, tmp_path / "cut", quiet=True)
    full, cut = _rows(tmp_path / "full" / "sharpness.csv"), _rows(tmp_path / "cut" / "sharpness.csv")
    assert [int(r["step"]) for r in full] == [0, 3, 6, 9, 12]
    for a, b in zip(full, cut, strict=True):
        a.pop("seconds"), b.pop("seconds")
        assert a == b  # warm starts restored: the same Lanczos runs, the same numbers
    assert {"lambda_2", "grad_overlap"} <= set(full[0])


def test_gd_threshold_column_is_two_over_the_scheduled_lr(tmp_path):
    cfg = _config(
        optimizer="gd", momentum=0.0, weight_decay=0.0, epochs=6, schedule="cosine", track_sharpness=2
    )
    train(cfg, tmp_path / "run", quiet=True)
    rows = _rows(tmp_path / "run" / "sharpness.csv")
    steps = {int(r["step"]): float(r["lr"]) for r in _rows(tmp_path / "run" / "steps.csv")}
    assert [int(r["step"]) for r in rows] == [0, 2, 4, 6]
    for r in rows:
        assert float(r["threshold"]) == pytest.approx(2.0 / float(r["lr"]), rel=1e-12)
        # the rate of the step that reached the point (at step 0: of the first step)
        assert float(r["lr"]) == pytest.approx(steps[max(int(r["step"]), 1)], rel=1e-12)
    assert float(rows[-1]["lr"]) > 0  # the cosine's last rate used, not the 0 after the end
    with_momentum = _config(optimizer="gd", momentum=0.5, weight_decay=0.0, epochs=2, track_sharpness=2)
    train(with_momentum, tmp_path / "mom", quiet=True)
    for r in _rows(tmp_path / "mom" / "sharpness.csv"):
        assert float(r["threshold"]) == pytest.approx((2 + 2 * 0.5) / 0.1, rel=1e-12)


def test_adam_runs_track_the_preconditioned_sharpness(tmp_path):
    cfg = _config(optimizer="adam", lr=0.01, epochs=1, track_sharpness=2, schedule="cosine")
    train(cfg, tmp_path / "run", quiet=True)
    rows = _rows(tmp_path / "run" / "sharpness.csv")
    assert rows[0]["precond_lambda_max"] == ""  # no second moments before the first step
    assert rows[0]["threshold"] == ""  # the raw sharpness has no threshold for Adam
    for r in rows[1:]:
        assert float(r["precond_lambda_max"]) > 0
        assert float(r["precond_threshold"]) == pytest.approx(38 / float(r["lr"]), rel=1e-12)


def test_tracking_does_not_change_the_training(tmp_path):
    a = train(_config(epochs=2), tmp_path / "tracked", quiet=True)
    b = train(_config(epochs=2, track_sharpness=None), tmp_path / "plain", quiet=True)
    sa = torch.load(a.final_checkpoint, weights_only=True)["state_dict"]
    sb = torch.load(b.final_checkpoint, weights_only=True)["state_dict"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not (tmp_path / "plain" / "sharpness.csv").exists()
