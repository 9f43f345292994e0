"""Grid throughput (points/s) of ``compute_surface`` against the physical limit and ``loss-landscapes``.

* physical limit: forward passes alone (``torch.no_grad``, eval mode) over the same data, one per
  point, with nothing else (no parameter update, no accuracy, no bookkeeping);
* ours: :func:`landscape.surface.compute_surface` on a ``steps x steps`` grid (filter-normalized
  orthogonal directions, loss and accuracy) with ``points_per_pass='auto'`` (the default), without
  and with the resumable surface file, and with ``points_per_pass=1`` (parameters set in place, one
  forward per point) and ``points_per_pass=32`` (32 stacked parameter sets per vmapped forward);
* ``loss_landscapes.random_plane(model, Loss(loss_fn, x, y), distance, steps, normalization='filter',
  deepcopy_model=True)`` on the same model and batch (``steps x steps`` points).

Usage::

    python benchmarks/bench_surface.py                      # all cases, ~2-4 minutes on 2 CPU cores
    python benchmarks/bench_surface.py --steps 11 --repeats 1 --cases mlp
    python benchmarks/bench_surface.py --no-loss-landscapes --cases mlp mlp-small mlp-tiny cnn16
    python benchmarks/bench_surface.py --precision bfloat16 --cases mlp mlp-small cnn16 --steps 11

With ``--precision bfloat16|float16`` it measures instead the same grid in float32 and in that
precision (``compute_surface(..., precision=...)``, forward under autocast), one point per pass and
``points_per_pass='auto'``, and prints the throughput ratio and the largest loss difference over
the whole grid (and the ``precision_check`` the surface records from its check points).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from landscape import Objective, build_model, digits_tensors
from landscape.surface import compute_surface, random_directions

# name: (model, model kwargs, samples or None for --samples)
CASES = {
    "mlp": ("mlp", {"hidden": [256, 256]}, None),
    "mlp-small": ("mlp", {"hidden": [64, 64]}, 256),
    "mlp-tiny": ("mlp", {"hidden": [8]}, 64),
    "cnn16": ("cnn", {"width": 16}, None),
    "cnn64": ("cnn", {"width": 64}, None),
    "cnn16-nobn": ("cnn", {"width": 16, "batch_norm": False}, None),
}


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def case_model_and_data(name: str, samples: int) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """The case's model (seed 0, eval mode) and its digits; the training split has 1438 images, so a
    larger request gets them all."""
    kind, kwargs, case_samples = CASES[name]
    samples = case_samples or samples
    torch.manual_seed(0)
    model = build_model(kind, **kwargs).eval()
    x, y = digits_tensors("train")
    return model, x[:samples].contiguous(), y[:samples].contiguous()


def bench_case(
    name: str, steps: int, samples: int, repeats: int, with_ll: bool = True
) -> dict[str, float | int | str]:
    model, x, y = case_model_and_data(name, samples)
    samples = len(y)
    points = steps * steps
    loss_fn = torch.nn.CrossEntropyLoss()
    obj = Objective(model, (x, y), loss_fn=loss_fn, device="cpu")
    dirs = random_directions(obj, 2, seed=0)
    grid = torch.linspace(-1, 1, steps).numpy()

    def forward_only() -> None:
        with torch.no_grad():
            for _ in range(points):
                loss_fn(model(x), y).item()

    def ours() -> None:
        compute_surface(obj, dirs, grid, grid, quiet=True)

    def ours_one() -> None:
        compute_surface(obj, dirs, grid, grid, points_per_pass=1, quiet=True)

    def ours_32() -> None:
        compute_surface(obj, dirs, grid, grid, points_per_pass=32, quiet=True)

    tmp = Path(tempfile.mkdtemp())

    def ours_file() -> None:
        compute_surface(obj, dirs, grid, grid, path=tmp / "s.npz", overwrite=True, quiet=True)
        (tmp / "s.npz").unlink()

    def loss_landscapes_plane() -> None:
        import loss_landscapes
        import loss_landscapes.metrics

        metric = loss_landscapes.metrics.Loss(loss_fn, x, y)
        loss_landscapes.random_plane(model, metric, 10, steps, normalization="filter", deepcopy_model=True)

    forward_only()  # warm-up
    auto = compute_surface(obj, dirs, grid[:2], grid[:2], quiet=True).metadata["points_per_pass"]
    compute_surface(obj, dirs, grid[:2], grid[:2], points_per_pass=32, quiet=True)  # vmap warm-up
    # round-robin repeats, best of each: other load on the machine hits every method alike
    fns = {"fwd": forward_only, "ours": ours, "file": ours_file, "one": ours_one, "p32": ours_32}
    if with_ll:
        fns["ll"] = loss_landscapes_plane
    best = dict.fromkeys(fns, float("inf"))
    ll_error = ""
    for _ in range(repeats):
        for key, fn in fns.items():
            if key == "ll" and ll_error:
                continue
            try:
                best[key] = min(best[key], _best(fn, 1))
            except ZeroDivisionError as exc:  # loss-landscapes' filter_normalize_ on zero filters
                ll_error = f"{type(exc).__name__}: {exc}"
    t_fwd, t_ours, t_file, t_ll = best["fwd"], best["ours"], best["file"], best.get("ll", float("nan"))
    return {
        "case": name,
        "params": sum(p.numel() for p in model.parameters()),
        "samples": samples,
        "points": points,
        "forward_only_pts_per_s": points / t_fwd,
        "ours_pts_per_s": points / t_ours,
        "ours_with_file_pts_per_s": points / t_file,
        "auto_points_per_pass": auto,
        "one_per_pass_pts_per_s": points / best["one"],
        "32_per_pass_pts_per_s": points / best["p32"],
        "loss_landscapes_pts_per_s": points / t_ll,
        "ours_over_limit": t_fwd / t_ours,
        "ours_file_over_limit": t_fwd / t_file,
        "ours_over_loss_landscapes": t_ll / t_ours,
        "loss_landscapes_error": ll_error if with_ll else "not run",
    }


def bench_precision(name: str, steps: int, samples: int, repeats: int, precision: str) -> dict[str, Any]:
    """Points per second in float32 and in ``precision`` (1/pass and auto), and the loss difference."""
    model, x, y = case_model_and_data(name, samples)
    samples = len(y)
    obj = Objective(model, (x, y), device="cpu")
    dirs = random_directions(obj, 2, seed=0)
    grid = torch.linspace(-1, 1, steps).numpy()
    runs = {(p, per): None for p in ("float32", precision) for per in (1, "auto")}
    best = dict.fromkeys(runs, float("inf"))
    for p, per in runs:  # warm-up (autocast and vmap first calls)
        compute_surface(obj, dirs, grid[:2], grid[:2], points_per_pass=per, precision=p, quiet=True)
    for _ in range(repeats):  # round-robin, best of each
        for p, per in runs:
            t = time.perf_counter()
            runs[p, per] = compute_surface(
                obj, dirs, grid, grid, points_per_pass=per, precision=p, quiet=True
            )
            best[p, per] = min(best[p, per], time.perf_counter() - t)
    points = steps * steps
    full, low = runs["float32", 1], runs[precision, 1]
    diff = np.abs(low.loss - full.loss)
    return {
        "case": name,
        "params": sum(p.numel() for p in model.parameters()),
        "samples": samples,
        "points": points,
        "auto_points_per_pass": runs["float32", "auto"].metadata["points_per_pass"],
        **{f"{p}_{per}_pts_per_s": points / t for (p, per), t in best.items()},
        "max_abs_loss_diff": float(diff.max()),
        "max_rel_loss_diff": float((diff / np.abs(full.loss)).max()),
        "max_abs_loss_diff_auto": float(np.abs(runs[precision, "auto"].loss - full.loss).max()),
        "max_accuracy_diff": float(np.abs(low.accuracy - full.accuracy).max()),
        "check": low.metadata["precision_check"],
    }


def print_precision(args: argparse.Namespace) -> None:
    """The ``--precision`` table: float32 vs the reduced precision, same grid, same process."""
    p = args.precision
    print(f"# grid {args.steps}x{args.steps}, float32 vs {p} autocast, best of {args.repeats}")
    print(
        f"| case | params | samples | f32 1/pass pts/s | {p} 1/pass pts/s | ratio | f32 auto (N) pts/s | "
        f"{p} auto pts/s | ratio | max abs loss diff (1/pass, auto) | max rel loss diff | "
        "max acc diff | check: points, max rel |"
    )
    print("|" + "---|" * 13)
    for name in args.cases:
        r = bench_precision(name, args.steps, args.samples, args.repeats, p)
        f1, l1 = r["float32_1_pts_per_s"], r[f"{p}_1_pts_per_s"]
        fa, la = r["float32_auto_pts_per_s"], r[f"{p}_auto_pts_per_s"]
        print(
            f"| {name} | {r['params']:,} | {r['samples']} | {f1:.1f} | {l1:.1f} | {l1 / f1:.2f}x | "
            f"{fa:.1f} ({r['auto_points_per_pass']}) | {la:.1f} | {la / fa:.2f}x | "
            f"{r['max_abs_loss_diff']:.1e}, {r['max_abs_loss_diff_auto']:.1e} | {r['max_rel_loss_diff']:.1e} | "
            f"{r['max_accuracy_diff']:.4f} | {len(r['check']['points'])}, {r['check']['max_rel_diff']:.1e} |",
            flush=True,
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=21)
    ap.add_argument("--samples", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--no-loss-landscapes", action="store_true", help="Skip loss-landscapes (faster).")
    ap.add_argument("--json", type=Path, default=None, help="Also write the rows as JSON here.")
    ap.add_argument(
        "--precision",
        choices=["bfloat16", "float16"],
        default=None,
        help="Measure float32 against this autocast precision instead (throughput and loss difference).",
    )
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"# torch {torch.__version__}, {platform.processor() or platform.machine()}, threads={torch.get_num_threads()}"
    )
    if args.precision:
        print_precision(args)
        return
    print(
        f"# grid {args.steps}x{args.steps}, {args.samples} digits in one batch (unless the case sets its own), float32, best of {args.repeats}"
    )
    header = (
        "| case | params | samples | forward-only pts/s | ours 1/pass pts/s | ours 32/pass pts/s | ours auto "
        "(N/pass) pts/s | ours auto+file pts/s | loss-landscapes pts/s | 1/pass / limit | 32/pass / limit | "
        "auto / limit | auto / loss-landscapes |"
    )
    print(header)
    print("|" + "---|" * 13)
    rows = []
    for name in args.cases:
        r = bench_case(name, args.steps, args.samples, args.repeats, not args.no_loss_landscapes)
        rows.append(r)
        ll = f"{r['loss_landscapes_pts_per_s']:.1f}" if not r["loss_landscapes_error"] else "-"
        ratio = f"{r['ours_over_loss_landscapes']:.2f}x" if not r["loss_landscapes_error"] else "-"
        if r["loss_landscapes_error"] and r["loss_landscapes_error"] != "not run":
            print(f"# loss-landscapes on {name}: {r['loss_landscapes_error']}")
        fwd = r["forward_only_pts_per_s"]
        print(
            f"| {r['case']} | {r['params']:,} | {r['samples']} | {fwd:.1f} | {r['one_per_pass_pts_per_s']:.1f} | "
            f"{r['32_per_pass_pts_per_s']:.1f} | {r['ours_pts_per_s']:.1f} ({r['auto_points_per_pass']}) | "
            f"{r['ours_with_file_pts_per_s']:.1f} | {ll} | {r['one_per_pass_pts_per_s'] / fwd:.2f} | "
            f"{r['32_per_pass_pts_per_s'] / fwd:.2f} | {r['ours_over_limit']:.2f} | {ratio} |",
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
