"""The transformer test matrix of issue 20: four models (a Hugging Face GPT-2 on padded causal-LM dict
items, a BERT-style sequence classifier, a ViT image classifier, a user's ``nn.TransformerEncoder``
module on tensor items), each with its default attention and no wrapper, through ``train``, ``evaluate``,
``sharpness`` (top-k, trace, density, per-layer, blocks, measures), ``plot1d``, ``plot2d`` and ``compare``
on the command line. Every numeric cell runs in float64 and is checked against a dense reference: the
objective computed directly from the model's forward at the checkpoint's weights, and the eigenvalues of
its dense Hessian (``torch.autograd.functional.hessian`` over the flat parameters, attention on its math
kernel)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import tf_factories as tf
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from torch.func import functional_call

from landscape.cli.main import cli
from landscape.hessian.attention import second_order_attention
from landscape.models.checkpoints import load_model

# name -> (model factory kwargs, causal LM?)
MODELS = {
    "gpt2": ({"n_embd": 4}, True),
    "bert": ({}, False),
    "vit": ({}, False),
    "encoder": ({}, False),
}
IDS = list(MODELS)
# batches of 5 of padded sequences of different real lengths: the token mean must not depend on them
ANALYSIS = ["--device", "cpu", "--dtype", "float64", "--batch-size", "5", "-q"]


def _ok(args: list[str]) -> str:
    res = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.output


def _model_args(name: str) -> list[str]:
    kwargs, _ = MODELS[name]
    args = ["--model", f"tf_factories:{name}", "--data", f"tf_factories:{name}_data"]
    return [*args, "--model-kwargs", json.dumps(kwargs)] if kwargs else args


def _train(name: str, out: Path, optimizer: str, seed: int, *extra: str) -> Path:
    args = [*_model_args(name), "--optimizer", optimizer, "--seed", str(seed), "--epochs", "1"]
    args += ["--batch-size", "8", "--lr", "0.01", "--weight-decay", "0", "--dtype", "float64"]
    _ok(["train", *args, *extra, "-o", str(out), "--device", "cpu", "-q"])
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Per model, lazily: two seeds of AdamW and of SAM (1 epoch, float64); seed 0 tracks the sharpness."""
    cache: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in cache:
            root = tmp_path_factory.mktemp(f"matrix_{name}")
            for opt in ("adamw", "sam"):
                _train(name, root / f"{opt}_s0", opt, 0, "--track-sharpness", "2")
                _train(name, root / f"{opt}_s1", opt, 1)
            cache[name] = root
        return cache[name]

    return get


# -- the dense float64 reference -------------------------------------------------------------------


def _items(name: str, samples: int | None = None):
    """The training split (or the CLI's fixed seeded subset of ``samples``) as one batch: (inputs, labels)."""
    ds = getattr(tf, f"{name}_data")("train")
    batch = {"x": ds.x, "labels": ds.y} if name == "encoder" else tf.stacked(ds)
    if samples is not None:  # landscape.data.datasets.fixed_subset, written out
        g = torch.Generator().manual_seed(0)
        idx = torch.sort(torch.randperm(len(ds), generator=g)[:samples]).values
        batch = {k: v[idx] for k, v in batch.items()}
    labels = batch.pop("labels")
    return batch, labels


def _net(ckpt: Path) -> torch.nn.Module:
    net, _ = load_model(ckpt)
    return net.double().eval()


def _objective(name: str, net: torch.nn.Module, samples: int | None = None):
    """The flat parameters of ``net`` and the full-data objective as a function of them."""
    names, params = zip(*[(n, p.detach()) for n, p in net.named_parameters()])
    shapes = [p.shape for p in params]
    flat = torch.cat([p.reshape(-1) for p in params])
    inputs, labels = _items(name, samples)
    causal = MODELS[name][1]

    def loss(w: torch.Tensor) -> torch.Tensor:
        chunks = torch.split(w, [s.numel() for s in shapes])
        d = {n: c.reshape(s) for n, c, s in zip(names, chunks, shapes)}
        out = (
            functional_call(net, d, args=(inputs["x"],))
            if name == "encoder"
            else functional_call(net, d, args=(), kwargs=inputs)
        )
        logits = out if isinstance(out, torch.Tensor) else out.logits
        if causal:
            return tf.token_mean(logits, labels)
        return F.cross_entropy(logits, labels)

    return flat, loss


def _reference_loss(name: str, ckpt: Path) -> float:
    flat, loss = _objective(name, _net(ckpt))
    with torch.no_grad():
        return float(loss(flat))


def _dense_eigenvalues(name: str, ckpt: Path, samples: int | None = None) -> np.ndarray:
    """Eigenvalues of the dense Hessian of the objective at ``ckpt``, descending."""
    flat, loss = _objective(name, _net(ckpt), samples)
    with second_order_attention():
        # vectorize: the rows batched through one reverse pass (equal to the row-by-row Hessian to 1e-15)
        H = torch.autograd.functional.hessian(loss, flat, vectorize=True)
    return torch.linalg.eigvalsh((H + H.T) / 2).flip(0).numpy()


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# -- the cells -------------------------------------------------------------------------------------


@pytest.mark.parametrize("opt", ["adamw", "sam"])
@pytest.mark.parametrize("name", IDS)
def test_train(runs, name, opt):
    run = runs(name) / f"{opt}_s0"
    final = _rows(run / "metrics.csv")[-1]
    assert int(final["epoch"]) == 1
    assert float(final["train_loss"]) == pytest.approx(_reference_loss(name, run / "final.pt"), rel=1e-9)
    assert 0 <= float(final["train_accuracy"]) <= 1  # token accuracy for GPT-2, never NaN
    tracked = _rows(run / "sharpness.csv")
    assert [int(r["step"]) for r in tracked][:2] == [0, 2]
    assert all(np.isfinite(float(r["lambda_max"])) for r in tracked)
    start = _dense_eigenvalues(name, run / "ckpts" / "epoch_000.pt")[0]  # step 0: the initial weights
    assert float(tracked[0]["lambda_max"]) == pytest.approx(start, rel=1e-4)


@pytest.mark.parametrize("name", IDS)
def test_evaluate(runs, name):
    ckpt = runs(name) / "adamw_s0" / "final.pt"
    out = json.loads(_ok(["evaluate", str(ckpt), "--json", "--device", "cpu", "--batch-size", "5"]))
    assert out["dtype"] == "float64"  # the checkpoint's own precision by default
    assert out["loss"] == pytest.approx(_reference_loss(name, ckpt), abs=1e-12)
    assert 0 <= out["accuracy"] <= 1


@pytest.mark.parametrize("name", IDS)
def test_sharpness(runs, name, tmp_path):
    ckpt = runs(name) / "adamw_s0" / "final.pt"
    args = ["sharpness", str(ckpt), "--top-k", "2", "--trace", "--trace-matvecs", "6", "--density"]
    args += ["--density-runs", "1", "--density-steps", "6", "--per-layer", "--blocks", "auto"]
    args += ["--measure", "worst,average", "--steps", "2", "--mc-samples", "4"]
    out = json.loads(_ok([*args, "-o", str(tmp_path), "--json", *ANALYSIS]))
    dense = _dense_eigenvalues(name, ckpt)
    assert out["converged"] == [True, True]
    np.testing.assert_allclose(out["eigenvalues"], dense[:2], rtol=1e-5, atol=1e-8)
    assert out["hvp_info"]["attention_backend"] == "math"
    assert np.isfinite(out["trace"]["estimate"])
    assert (tmp_path / "density.npz").exists()
    layers = out["per_layer"]["layers"]
    assert layers and all(np.isfinite(row["top_eigenvalue"]) for row in layers)
    assert max(row["top_eigenvalue"] for row in layers) <= dense[0] * (1 + 1e-6)  # a block's lambda <= lambda
    assert len(out["blocks"]["blocks"]) >= 2
    measures = out["measures"]
    assert measures["worst"]["value"] >= 0 and np.isfinite(measures["average"]["value"])


@pytest.mark.parametrize("name", IDS)
def test_plot1d(runs, name, tmp_path):
    ckpt = runs(name) / "adamw_s0" / "final.pt"
    _ok(["plot1d", str(ckpt), "--x", "-0.5:0.5:3", "-o", str(tmp_path), *ANALYSIS])
    (surface,) = tmp_path.glob("*.npz")
    z = np.load(surface)
    assert z["loss"].shape == (3,) and np.isfinite(z["loss"]).all()
    assert z["loss"][1] == pytest.approx(_reference_loss(name, ckpt), abs=1e-12)


@pytest.mark.parametrize("name", IDS)
def test_plot2d(runs, name, tmp_path):
    ckpt = runs(name) / "adamw_s0" / "final.pt"
    _ok(["plot2d", str(ckpt), "--x", "-0.5:0.5:3", "--y", "-0.5:0.5:3", "-o", str(tmp_path), *ANALYSIS])
    (surface,) = tmp_path.glob("*.npz")
    z = np.load(surface)
    assert z["loss"].shape == (3, 3) and np.isfinite(z["loss"]).all()
    assert z["loss"][1, 1] == pytest.approx(_reference_loss(name, ckpt), abs=1e-12)


@pytest.mark.parametrize("name", IDS)
def test_compare(runs, name, tmp_path):
    root = runs(name)
    _ok(["compare", str(root), "--sharpness", "8", "--dtype", "float64", "-o", str(tmp_path)])
    result = {r["name"]: r for r in json.loads((tmp_path / "comparison.json").read_text())["runs"]}
    assert sorted(result) == ["adamw_s0", "adamw_s1", "sam_s0", "sam_s1"]
    for run, row in result.items():
        assert row["lambda_max_source"] == "computed" and row["lambda_max_settings"]["dtype"] == "float64"
        dense = _dense_eigenvalues(name, root / run / "final.pt", samples=8)[0]
        assert row["lambda_max"] == pytest.approx(dense, rel=1e-4)
        assert row["train_loss"] == pytest.approx(_reference_loss(name, root / run / "final.pt"), rel=1e-9)
        assert 0 <= row["test_accuracy"] <= 1
