"""Mode connectivity of two digits MLPs trained from different seeds: barriers and their cost.

Trains two MLPs (64-128-128-10, ReLU) on the embedded digits data with plain SGD from seeds 0 and 1,
then runs :func:`landscape.connect.connect_checkpoints` twice:

* ``--align weight-matching --curve bezier``: the linear barrier before alignment, after alignment
  (Ainsworth et al. 2023) and along a Bezier curve between A and the aligned B;
* ``--curve bezier``: a Bezier curve between A and B as trained (Garipov et al. 2018).

Barriers are measured on the training split (1437 examples) and the test split (360) at ``--points``
positions; the cost is counted in passes over a dataset (evaluation, training) and seconds.

Usage::

    python benchmarks/bench_connect.py                              # ~2-4 minutes on 2 CPU cores
    python benchmarks/bench_connect.py --figure figures/connect_digits_mlp.png --json out.json
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from landscape.connect import ConnectResult, connect_checkpoints
from landscape.data.datasets import DataSpec, digits_tensors
from landscape.io.atomic import atomic_path
from landscape.models.builders import ModelSpec, build_model
from landscape.models.checkpoints import save_checkpoint
from landscape.plot.connect import plot_connect

SPEC = ModelSpec("mlp", {"in_features": 64, "hidden": [128, 128], "num_classes": 10, "activation": "relu"})


def train_mlp(seed: int, epochs: int, lr: float, path: Path) -> dict[str, float]:
    """Plain SGD (momentum 0.9, batch 64) on the digits training split; returns final metrics."""
    x, y = digits_tensors("train")
    torch.manual_seed(seed)
    model = build_model(SPEC)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    metrics = {}
    with torch.no_grad():
        for split in ("train", "test"):
            xs, ys = digits_tensors(split)
            out = model(xs)
            metrics[f"{split}_loss"] = float(nn.functional.cross_entropy(out, ys))
            metrics[f"{split}_accuracy"] = float((out.argmax(1) == ys).float().mean())
    save_checkpoint(path, model, model_spec=SPEC, data_spec=DataSpec("digits"), epoch=epochs, metrics=metrics)
    return metrics


def _row(result: ConnectResult, kind: str) -> dict[str, float]:
    p = result.paths[kind]
    return {**p.barriers(), "passes": p.passes, "seconds": round(p.seconds, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=30, help="training epochs of each MLP")
    ap.add_argument("--lr", type=float, default=0.05, help="learning rate of the MLPs")
    ap.add_argument("--curve-epochs", type=int, default=20)
    ap.add_argument("--curve-lr", type=float, default=0.05)
    ap.add_argument("--points", type=int, default=21)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--figure", type=Path, default=None, help="Save the figure (png/pdf) here.")
    ap.add_argument("--json", type=Path, default=None, help="Also write the numbers as JSON here.")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows: dict[str, object] = {
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        rows["endpoints"] = {
            f"seed{s}": train_mlp(s, args.epochs, args.lr, work / f"seed{s}.pt") for s in (0, 1)
        }
        rows["train_seconds"] = round(time.perf_counter() - t0, 1)
        common = dict(
            points=args.points, epochs=args.curve_epochs, lr=args.curve_lr, device="cpu", quiet=True
        )
        results = {}
        for split in ("train", "test"):
            t = time.perf_counter()
            aligned = connect_checkpoints(
                work / "seed0.pt",
                work / "seed1.pt",
                align="weight-matching",
                curve="bezier",
                split=split,
                out=work / f"aligned_{split}",
                **common,
            )
            t_aligned = time.perf_counter() - t
            t = time.perf_counter()
            plain = connect_checkpoints(
                work / "seed0.pt",
                work / "seed1.pt",
                curve="bezier",
                split=split,
                out=work / f"plain_{split}",
                **common,
            )
            t_plain = time.perf_counter() - t
            align_seconds = t_aligned - sum(p.seconds for p in aligned.paths.values())
            results[split] = {
                "linear": _row(aligned, "linear_unaligned"),
                "linear_aligned": _row(aligned, "linear"),
                "bezier": _row(plain, "bezier"),
                "bezier_aligned": _row(aligned, "bezier"),
                "alignment": {
                    **aligned.metadata["alignment"],
                    "seconds_incl_loading": round(align_seconds, 2),
                },
                "total_seconds": {"aligned_run": round(t_aligned, 1), "plain_run": round(t_plain, 1)},
            }
            if split == "test" and args.figure is not None:
                fig = plot_connect(
                    ConnectResult(
                        paths={
                            "linear_unaligned": aligned.paths["linear_unaligned"],
                            "linear": aligned.paths["linear"],
                            "bezier": aligned.paths["bezier"],
                        },
                        metadata={**aligned.metadata, "a": "MLP seed 0", "b": "MLP seed 1"},
                    ),
                    title="Two digits MLPs (seeds 0, 1): test loss and error along paths",
                )
                with atomic_path(args.figure, suffix=args.figure.suffix) as tmp_fig:
                    fig.savefig(tmp_fig, format=args.figure.suffix.lstrip(".") or "png", dpi=150)
        rows["results"] = results
    print(json.dumps(rows, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
