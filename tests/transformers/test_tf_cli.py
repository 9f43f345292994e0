"""A Hugging Face GPT-2 from a user's factory and padded dict items through train, plot1d, plot2d,
connect and sharpness on the command line, with no wrapper; numbers against float64 token means."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import tf_factories as tf
import torch
from click.testing import CliRunner

from landscape.cli.main import cli
from landscape.models.checkpoints import load_model
from landscape.training.batches import SeededBatches

MODEL = ["--model", "tf_factories:gpt2"]
TRAIN = [*MODEL, "--data", "tf_factories:padded", "--lr", "0.01", "--weight-decay", "0", "--batch-size", "8"]
ANALYSIS = ["--device", "cpu", "--dtype", "float64", "-q"]


def _ok(args: list[str]) -> str:
    res = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.output


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _weights(path: Path) -> dict[str, torch.Tensor]:
    net, _ = load_model(path)
    return {k: v.double() for k, v in net.state_dict().items()}


def _at(weights: dict[str, torch.Tensor]) -> torch.nn.Module:
    net = tf.gpt2().double()
    net.load_state_dict(weights)
    return net


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Two 2-epoch runs (AdamW with gradient clipping, SAM), both tracking the sharpness."""
    root = tmp_path_factory.mktemp("tf_runs")
    out = {}
    for opt, extra in (("adamw", ["--clip-grad-norm", "0.5"]), ("sam", [])):
        out[opt] = root / opt
        args = [*TRAIN, "--optimizer", opt, "--epochs", "2", "--track-sharpness", "2", *extra]
        _ok(["train", *args, "-o", str(out[opt]), "--device", "cpu", "-q"])
    return out


@pytest.mark.parametrize("opt", ["adamw", "sam"])
def test_train_logs_the_token_mean_of_its_checkpoints(runs, opt):
    run = runs[opt]
    data = tf.stacked(tf.padded("train"))
    metrics = _rows(run / "metrics.csv")
    assert [int(r["epoch"]) for r in metrics] == [0, 1, 2]
    final = tf.token_mean_of(_at(_weights(run / "final.pt")), data)
    assert float(metrics[-1]["train_loss"]) == pytest.approx(final, rel=1e-5)
    test = tf.token_mean_of(_at(_weights(run / "final.pt")), tf.stacked(tf.padded("test")))
    assert float(metrics[-1]["test_loss"]) == pytest.approx(test, rel=1e-5)
    assert 0 < float(metrics[-1]["train_accuracy"]) < 1  # token accuracy, not NaN
    tracked = _rows(run / "sharpness.csv")
    assert [int(r["step"]) for r in tracked] == [0, 2, 4, 6]
    assert all(float(r["lambda_max"]) > 0 for r in tracked)
    config = json.loads((run / "config.json").read_text())
    assert config["clip_grad_norm"] == (0.5 if opt == "adamw" else None)


def test_the_first_step_is_taken_on_the_token_mean_of_its_batch(runs):
    """steps.csv's first loss is the shifted token mean of the epoch's first batch at the initial weights
    (the training loss decides the causal shift from the model, as the objective does)."""
    ds = tf.padded("train")
    idx = SeededBatches(ds, torch.device("cpu"), torch.float32).order(0, 1)[:8]
    batch = {k: v[idx] for k, v in tf.stacked(ds).items()}
    start = _at(_weights(runs["sam"] / "ckpts" / "epoch_000.pt"))
    first = float(_rows(runs["sam"] / "steps.csv")[0]["loss"])
    assert first == pytest.approx(tf.token_mean_of(start, batch), rel=1e-5)


def test_plot1d_interpolation_points_are_token_means_at_the_moved_weights(runs, tmp_path):
    a, b = runs["adamw"] / "final.pt", runs["sam"] / "final.pt"
    args = ["plot1d", str(a), "--to", str(b), "--dir-type", "interpolation", "--x", "0:1:3"]
    _ok([*args, "--norm", "none", "-o", str(tmp_path), *ANALYSIS])
    (surface,) = tmp_path.glob("*.npz")
    z = np.load(surface)
    wa, wb = _weights(a), _weights(b)
    data = tf.stacked(tf.padded("train"))
    for alpha, loss in zip(z["xs"], z["loss"]):
        moved = {k: wa[k] + float(alpha) * (wb[k] - wa[k]) for k in wa}
        assert loss == pytest.approx(tf.token_mean_of(_at(moved), data), abs=1e-10)
    assert np.all((z["accuracy"] > 0) & (z["accuracy"] < 1))
    meta = json.loads(str(z["metadata_json"]))
    assert meta["points_per_pass"] == 1
    assert meta["points_per_pass_reason"].startswith("the inputs are dicts (Hugging Face batches)")


def test_plot2d_runs_and_its_origin_is_the_checkpoint(runs, tmp_path):
    a = runs["adamw"] / "final.pt"
    _ok(["plot2d", str(a), "--x", "-1:1:3", "--y", "-1:1:3", "-o", str(tmp_path), *ANALYSIS])
    (surface,) = tmp_path.glob("*.npz")
    z = np.load(surface)
    assert z["loss"].shape == (3, 3) and np.isfinite(z["loss"]).all()
    expected = tf.token_mean_of(_at(_weights(a)), tf.stacked(tf.padded("train")))
    assert z["loss"][1, 1] == pytest.approx(expected, abs=1e-10)


def test_connect_linear_and_bezier_and_weight_matching_refused(runs, tmp_path):
    a, b = runs["adamw"] / "final.pt", runs["sam"] / "final.pt"
    _ok(
        [
            "connect",
            str(a),
            str(b),
            "--points",
            "3",
            "--curve",
            "bezier",
            "--epochs",
            "1",
            "-o",
            str(tmp_path),
        ]
        + ANALYSIS
    )
    result = json.loads((tmp_path / "connect.json").read_text())
    wa, wb = _weights(a), _weights(b)
    mid = {k: (wa[k] + wb[k]) / 2 for k in wa}
    expected = tf.token_mean_of(_at(mid), tf.stacked(tf.padded("train")))
    assert result["linear"]["alphas"][1] == 0.5
    assert result["linear"]["loss"][1] == pytest.approx(expected, abs=1e-10)
    assert np.isfinite(result["bezier"]["loss"]).all()
    res = CliRunner().invoke(
        cli, ["connect", str(a), str(b), "--align", "weight-matching", "-o", str(tmp_path / "wm"), *ANALYSIS]
    )
    assert res.exit_code != 0
    assert "weight matching of attention models is not supported" in res.output
    assert "GPT2Attention" in res.output


def test_sharpness_measures_on_the_checkpoint(runs, tmp_path):
    ckpt = runs["adamw"] / "final.pt"
    _ok(["sharpness", str(ckpt), "--measure", "worst,average,fisher-rao", "-o", str(tmp_path), *ANALYSIS])
    measures = json.loads((tmp_path / "sharpness.json").read_text())["measures"]
    assert measures["worst"]["value"] >= 0 and np.isfinite(measures["average"]["value"])
    # Fisher-Rao over counted tokens: (1/M) sum_t <w, grad l_t>^2, one gradient per token
    net = _at(_weights(ckpt))
    data = tf.stacked(tf.padded("train"))
    params = [p for p in net.parameters() if p.requires_grad]
    logits = net(**{k: v for k, v in data.items() if k != "labels"}).logits[:, :-1]
    labels = data["labels"][:, 1:]
    logp = torch.log_softmax(logits, dim=-1)
    counted = (labels != -100).nonzero().tolist()
    squares = []
    for i, t in counted:
        grads = torch.autograd.grad(-logp[i, t, labels[i, t]], params, retain_graph=True)
        squares.append(float(sum((p.detach() * g).sum() for p, g in zip(params, grads))) ** 2)
    assert measures["fisher-rao"]["value"] == pytest.approx(sum(squares) / len(squares), rel=1e-9)
