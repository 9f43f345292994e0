"""Sharpness-tracking benchmark: warm vs cold Lanczos, tracking overhead, edge of stability on digits.

Model: a tanh MLP (64 -> W -> W -> 10) on the 1438 training digits (8x8, flattened), square loss
(``mse``: 1/2 ||f(x) - onehot(y)||^2, averaged), full-batch gradient descent, float32, CPU, one thread.

1. HVPs per measurement, warm-started (previous eigenvectors) vs cold (random start), measured by two
   trackers at the same steps of the same run, for several EVERY and tolerances; the largest relative
   difference between their lambda_max.
2. Training-time overhead of tracking every 50 steps: full-batch GD and minibatch SGD (batch 64), with
   the tracker on the whole training set (1438 examples).
3. Progressive sharpening and the edge of stability (Cohen et al. 2021): full-batch GD at two learning
   rates, lambda_max every few steps; the run folders (sharpness.csv, steps.csv) are written under
   --runs and the figure (drawn from them) to --figure.

4. The adaptive edge of stability (Cohen et al. 2022): full-batch Adam, the preconditioned sharpness
   lambda_1(P^-1 H) against 38/lr (figure to --adam-figure).

Run:  python benchmarks/bench_tracking.py --figure eos.png [--adam-figure adam.png] [--runs DIR]
      [--quick] [--out FILE]
Prints a Markdown report (and writes it to --out).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from landscape.full_batch import full_batch_objective, full_batch_step
from landscape.hessian import HessianOperator, lanczos
from landscape.io.atomic import atomic_path, atomic_write_text
from landscape.io.data import digits_tensors
from landscape.losses import resolve_loss
from landscape.plot.sharpness_track import plot_sharpness_track
from landscape.tracking import SharpnessTracker, read_history, rows_to_csv, tracking_objective


def tanh_mlp(width: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(64, width),
        nn.Tanh(),
        nn.Linear(width, width),
        nn.Tanh(),
        nn.Linear(width, 10),
    )


def digits() -> tuple[torch.Tensor, torch.Tensor]:
    return digits_tensors("train")


def warm_vs_cold(width: int, lr: float, steps: int, every: int, tol: float, k: int = 1) -> dict[str, float]:
    """Two trackers (warm, cold) of the top ``k`` at the same steps of one full-batch GD run."""
    x, y = digits()
    model = tanh_mlp(width)
    loss_fn = resolve_loss("mse")
    train_obj = full_batch_objective(model, (x, y), loss_fn=loss_fn, batch_size=None)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    sample = tracking_objective(model, (x, y), loss_fn=loss_fn, batch_size=None)
    warm = SharpnessTracker(sample, every=every, tol=tol, k=k)
    ref_values: dict[int, float] = {}
    cold = SharpnessTracker(sample, every=every, tol=tol, k=k, warm_start=False)
    for step in range(steps + 1):
        if warm.due(step, last=step == steps):
            a = warm.measure(step, step, opt)
            b = cold.measure(step, step, opt)
            if abs(a["lambda_max"] - b["lambda_max"]) > 1e-5 * abs(b["lambda_max"]):
                ref_values[step] = float(
                    lanczos(HessianOperator(sample), k + 2, tol=1e-9, max_matvecs=800).eigenvalues[0]
                )
        if step < steps:
            full_batch_step(opt, train_obj)
    # the first measurement has no previous eigenvector: both are cold there
    # where the two disagree, a tight reference says which one missed the top eigenvalue
    misses = {"warm": 0, "cold": 0}
    for a, b in zip(warm.rows, cold.rows):
        if abs(a["lambda_max"] - b["lambda_max"]) > 1e-5 * abs(b["lambda_max"]):
            ref = ref_values[a["step"]]
            for name, row in (("warm", a), ("cold", b)):
                misses[name] += abs(row["lambda_max"] - ref) > 1e-5 * abs(ref)
    w = np.array([r["hvps"] for r in warm.rows[1:]], dtype=float)
    c = np.array([r["hvps"] for r in cold.rows[1:]], dtype=float)
    lw = np.array([r["lambda_max"] for r in warm.rows])
    lc = np.array([r["lambda_max"] for r in cold.rows])
    return {
        "params": sample.num_params,
        "measurements": len(w),
        "warm": float(w.mean()),
        "cold": float(c.mean()),
        "ratio": float(c.mean() / w.mean()),
        "max_rel_diff": float(np.max(np.abs(lw - lc) / np.abs(lc))),
        "misses_warm": misses["warm"],
        "misses_cold": misses["cold"],
        "lambda_first": float(lw[0]),
        "lambda_last": float(lw[-1]),
    }


def overhead(kind: str, steps: int, every: int, width: int) -> dict[str, float]:
    """Wall time of ``steps`` training steps without and with tracking every ``every`` steps.

    Best of 3 alternating repeats of each (the machine is shared: single runs varied by 2x).
    """
    x, y = digits()
    loss_fn = resolve_loss("mse")
    times = {False: float("inf"), True: float("inf")}
    for tracked in (False, True) * 3:
        model = tanh_mlp(width)
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        train_obj = full_batch_objective(model, (x, y), loss_fn=loss_fn, batch_size=None)
        tracker = SharpnessTracker(
            tracking_objective(model, (x, y), loss_fn=loss_fn, batch_size=None), every=every
        )
        g = torch.Generator().manual_seed(0)
        hvps = 0
        t0 = time.perf_counter()
        for step in range(steps + 1):
            if tracked and tracker.due(step, last=step == steps):
                hvps += tracker.measure(step, 0, opt)["hvps"]
            if step == steps:
                break
            if kind == "gd":
                full_batch_step(opt, train_obj)
            else:
                idx = torch.randint(0, len(y), (64,), generator=g)
                opt.zero_grad()
                loss_fn(model(x[idx]), y[idx]).backward()
                opt.step()
        times[tracked] = min(times[tracked], time.perf_counter() - t0)
        if tracked:
            measurements, total_hvps = len(tracker.rows), hvps
    return {
        "plain_s": times[False],
        "tracked_s": times[True],
        "overhead": times[True] / times[False] - 1.0,
        "measurements": measurements,
        "hvps": total_hvps,
    }


def eos_run(run_dir: Path, width: int, lr: float, steps: int, every: int, adam: bool = False) -> list[dict]:
    """Full-batch GD (or Adam) with tracking; writes run_dir/sharpness.csv and run_dir/steps.csv."""
    x, y = digits()
    model = tanh_mlp(width)
    loss_fn = resolve_loss("mse")
    train_obj = full_batch_objective(model, (x, y), loss_fn=loss_fn, batch_size=None)
    opt = torch.optim.Adam(model.parameters(), lr=lr) if adam else torch.optim.SGD(model.parameters(), lr=lr)
    tracker = SharpnessTracker(
        tracking_objective(model, (x, y), loss_fn=loss_fn, batch_size=None), every=every
    )
    step_rows = []
    for step in range(steps + 1):
        if step > 0 or not adam:  # Adam's preconditioner exists after the first step
            tracker.maybe_measure(step, step, opt, last=step == steps)
        if step < steps:
            loss = full_batch_step(opt, train_obj)
            step_rows.append({"epoch": step + 1, "step": step + 1, "loss": loss, "lr": lr})
            if not np.isfinite(loss):
                break
    tracker.write_csv(run_dir / "sharpness.csv")
    atomic_write_text(run_dir / "steps.csv", rows_to_csv(step_rows, ["epoch", "step", "loss", "lr"]))
    return tracker.rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--figure", type=Path, required=True, help="where to save the edge-of-stability figure")
    ap.add_argument(
        "--runs", type=Path, default=None, help="folder for the run CSVs (default: a temporary one)"
    )
    ap.add_argument(
        "--quick", action="store_true", help="shorter runs (a smoke test, not the reported numbers)"
    )
    ap.add_argument("--adam-figure", type=Path, default=None, help="where to save the Adam figure")
    ap.add_argument("--out", type=Path, default=None, help="also write the report here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    q = args.quick
    lines = ["### Warm vs cold start: HVPs per measurement (full-batch GD, lr 0.1)", ""]
    lines += [
        "| model (params) | EVERY | tol | steps | measurements | warm HVPs | cold HVPs | cold / warm "
        "| max rel. diff of lambda_max | top eigenvalue missed: warm / cold | lambda_max first -> last |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    cases = [
        (64, 1, 1e-4, 30),
        (64, 1, 1e-3, 30),
        (64, 10, 1e-4, 300),
        (64, 10, 1e-3, 300),
        (64, 50, 1e-4, 500),
        (64, 50, 1e-3, 500),
        (256, 1, 1e-4, 30),
        (256, 10, 1e-4, 300),
        (256, 10, 1e-3, 300),
    ]
    if q:
        cases = [(64, 1, 1e-3, 5), (64, 10, 1e-3, 30)]
    for width, every, tol, steps in cases:
        r = warm_vs_cold(width, 0.1, steps, every, tol)
        lines.append(
            f"| tanh MLP w={width} ({r['params']:,}) | {every} | {tol:g} | {steps} | {r['measurements']} "
            f"| {r['warm']:.1f} | {r['cold']:.1f} | {r['ratio']:.2f}x | {r['max_rel_diff']:.1e} "
            f"| {r['misses_warm']} / {r['misses_cold']} "
            f"| {r['lambda_first']:.3f} -> {r['lambda_last']:.3f} |"
        )
        print(lines[-1], flush=True)
    lines += [
        "",
        "### Training-time overhead of tracking every 50 steps (tanh MLP w=64, 1438 tracked examples)",
        "",
    ]
    lines += [
        "| training | steps | without tracking (s, best of 3) | with tracking (s, best of 3) | overhead "
        "| measurements | HVPs |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind in ("gd", "sgd-64"):
        steps = 100 if q else 500
        r = overhead(kind, steps, 50, 64)
        lines.append(
            f"| {'full-batch GD' if kind == 'gd' else 'SGD, batch 64'} | {steps} | {r['plain_s']:.2f} "
            f"| {r['tracked_s']:.2f} | {100 * r['overhead']:.0f} % | {r['measurements']} | {r['hvps']} |"
        )
        print(lines[-1], flush=True)
    runs = args.runs or Path(tempfile.mkdtemp(prefix="eos-"))
    lines += ["", "### Edge of stability (tanh MLP w=64, square loss, full-batch GD)", ""]
    lines += [
        "| lr | 2/lr | steps | lambda_max at start | first step with lambda_max >= 2/lr "
        "| lambda_max after it: mean (min-max) | loss start -> end |",
        "|---|---|---|---|---|---|---|",
    ]
    histories = []
    for lr, steps in ((0.1, 2500), (0.2, 2000)) if not q else ((0.2, 300),):
        run_dir = runs / f"gd-lr{lr:g}"
        rows = eos_run(run_dir, 64, lr, steps, 10 if not q else 20)
        lam = np.array([r["lambda_max"] for r in rows])
        step = np.array([r["step"] for r in rows])
        crossed = np.nonzero(lam >= 2 / lr)[0]
        hist = read_history(run_dir, label=f"lr = {lr:g}")
        histories.append(hist)
        if len(crossed):
            after = lam[crossed[0] :]
            eos = f"{int(step[crossed[0]])} | {after.mean():.2f} ({after.min():.2f}-{after.max():.2f})"
        else:
            eos = "never | -"
        assert hist.loss is not None
        lines.append(
            f"| {lr:g} | {2 / lr:g} | {steps} | {lam[0]:.2f} | {eos} | {hist.loss[0]:.4f} -> {hist.loss[-1]:.4f} |"
        )
        print(lines[-1], flush=True)
    fig = plot_sharpness_track(
        histories, title="Edge of stability: digits, tanh MLP, square loss, full-batch GD"
    )
    fmt = args.figure.suffix.lstrip(".") or "png"
    with atomic_path(args.figure, suffix=f".{fmt}") as tmp:
        fig.savefig(tmp, format=fmt, dpi=150)
    lines += ["", f"Figure: {args.figure} (drawn from {runs}/gd-lr*/sharpness.csv and steps.csv)"]

    lr, steps = (0.002, 1500) if not q else (0.002, 100)
    lines += [
        "",
        f"### Adaptive edge of stability (tanh MLP w=64, square loss, full-batch Adam, lr {lr:g})",
        "",
    ]
    lines += [
        "| steps | 38/lr | first step with lambda_1(P^-1 H) >= 0.9 * 38/lr "
        "| lambda_1(P^-1 H) after it: mean (min-max) | lambda_max(H) start -> end | loss start -> end |",
        "|---|---|---|---|---|---|",
    ]
    run_dir = runs / f"adam-lr{lr:g}"
    rows = eos_run(run_dir, 64, lr, steps, 25 if not q else 20, adam=True)
    pre = np.array([r["precond_lambda_max"] for r in rows])
    thr = rows[0]["precond_threshold"]
    near = np.nonzero(pre >= 0.9 * thr)[0]
    hist = read_history(run_dir, label=f"Adam, lr = {lr:g}")
    assert hist.loss is not None
    if len(near):
        after = pre[near[0] :]
        eos = f"{int(rows[near[0]]['step'])} | {after.mean():.0f} ({after.min():.0f}-{after.max():.0f})"
    else:
        eos = "never | -"
    lines.append(
        f"| {steps} | {thr:.0f} | {eos} | {rows[0]['lambda_max']:.2f} -> {rows[-1]['lambda_max']:.2f} "
        f"| {hist.loss[0]:.4f} -> {hist.loss[-1]:.4f} |"
    )
    print(lines[-1], flush=True)
    if args.adam_figure is not None:
        fig = plot_sharpness_track(
            hist, title="Adaptive edge of stability: digits, tanh MLP, square loss, Adam"
        )
        fmt = args.adam_figure.suffix.lstrip(".") or "png"
        with atomic_path(args.adam_figure, suffix=f".{fmt}") as tmp:
            fig.savefig(tmp, format=fmt, dpi=150)
        lines += ["", f"Figure: {args.adam_figure} (drawn from {run_dir}/sharpness.csv and steps.csv)"]
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out is not None:
        atomic_write_text(args.out, report)


if __name__ == "__main__":
    main()
