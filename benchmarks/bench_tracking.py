"""Sharpness-tracking benchmark: warm vs cold Lanczos, tracking overhead, edge of stability on digits.

Model: a tanh MLP (64 -> W -> W -> 10) on the 1438 training digits (8x8, flattened), square loss
(``mse``: 1/2 ||f(x) - onehot(y)||^2, averaged), full-batch gradient descent, float32, CPU, one thread.

1. HVPs per measurement, warm-started (the sum of the previous eigenvectors, the library's tracker),
   from a start block (previous eigenvectors as columns plus a random column, blocks of k + 1), from a
   mixed start block (each previous eigenvector plus 0.1 random, blocks of k) and cold (random
   start), measured by four trackers at the same steps of the same run, for several k, EVERY and
   tolerances; the largest relative difference of their lambda_max from the cold one.
2. Training-time overhead of tracking every 50 steps: full-batch GD and minibatch SGD (batch 64), with
   the tracker on the whole training set (1438 examples).
3. Progressive sharpening and the edge of stability (Cohen et al. 2021): full-batch GD at two learning
   rates, lambda_max every few steps; the run folders (sharpness.csv, steps.csv) are written under
   --runs and the figure (drawn from them) to --figure.

4. The adaptive edge of stability (Cohen et al. 2022): full-batch Adam, the preconditioned sharpness
   lambda_1(P^-1 H) against 38/lr (figure to --adam-figure).

Run:  python benchmarks/bench_tracking.py --figure eos.png [--adam-figure adam.png] [--runs DIR]
      [--quick] [--warm-cold-only] [--out FILE]
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

from landscape.data.datasets import digits_tensors
from landscape.hessian import EigenResult, HessianOperator, block_lanczos, lanczos
from landscape.io.atomic import atomic_path, atomic_write_text
from landscape.objective.losses import resolve_loss
from landscape.plot.sharpness_track import plot_sharpness_track
from landscape.training.full_batch import full_batch_objective, full_batch_step
from landscape.training.sharpness_tracking import (
    SharpnessTracker,
    read_history,
    rows_to_csv,
    tracking_objective,
)


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


class BlockStartTracker(SharpnessTracker):
    """The tracker warm-started from a block (issue 12): ``block_lanczos`` with ``V0`` = the previous
    ``k`` Ritz vectors plus one random column, blocks of ``k + 1`` (``mix=False``), or each previous
    vector plus ``explore`` times its own random unit vector, blocks of ``k`` (``mix=True``). Cold
    (the first measurement) as the library's tracker. Records the passes of every measurement."""

    def __init__(self, *args: object, mix: bool, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.mix = mix
        self.passes: list[int] = []

    def _eigen(self, op: HessianOperator, seed: int) -> EigenResult:
        if self._vectors is None:
            res = super()._eigen(op, seed)
            self.passes.append(res.matvecs)
            return res
        n, k = op.shape[0], self.k
        U = self._vectors.to(op.dtype)
        R = torch.randn(n, k, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        R = (R / torch.linalg.vector_norm(R, dim=0)).to(op.dtype)
        V0, block = (U + self.explore * R, k) if self.mix else (torch.cat([U, R[:, :1]], dim=1), k + 1)
        res = block_lanczos(
            op, k, block_size=block, V0=V0, tol=self.tol, max_matvecs=self.max_hvps, seed=seed
        )
        self.passes.append(int(res.passes or 0))
        return res


def warm_vs_cold(width: int, lr: float, steps: int, every: int, tol: float, k: int = 1) -> dict[str, float]:
    """Four trackers of the top ``k`` at the same steps of one full-batch GD run: warm (the summed
    start), block start, mixed block start, cold."""
    x, y = digits()
    model = tanh_mlp(width)
    loss_fn = resolve_loss("mse")
    train_obj = full_batch_objective(model, (x, y), loss_fn=loss_fn, batch_size=None)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    sample = tracking_objective(model, (x, y), loss_fn=loss_fn, batch_size=None)
    trackers = {
        "warm": SharpnessTracker(sample, every=every, tol=tol, k=k),
        "block": BlockStartTracker(sample, every=every, tol=tol, k=k, mix=False),
        "mixed": BlockStartTracker(sample, every=every, tol=tol, k=k, mix=True),
        "cold": SharpnessTracker(sample, every=every, tol=tol, k=k, warm_start=False),
    }
    misses = dict.fromkeys(trackers, 0)
    for step in range(steps + 1):
        if trackers["warm"].due(step, last=step == steps):
            lam = {name: t.measure(step, step, opt)["lambda_max"] for name, t in trackers.items()}
            # where they disagree, a tight reference says which missed the top eigenvalue
            if max(lam.values()) - min(lam.values()) > 1e-5 * abs(lam["cold"]):
                ref = float(lanczos(HessianOperator(sample), k + 2, tol=1e-9, max_matvecs=800).eigenvalues[0])
                for name, value in lam.items():
                    misses[name] += abs(value - ref) > 1e-5 * abs(ref)
        if step < steps:
            full_batch_step(opt, train_obj)
    # the first measurement has no previous eigenvector: all are cold there
    hvps = {name: np.array([r["hvps"] for r in t.rows[1:]], dtype=float) for name, t in trackers.items()}
    lams = {name: np.array([r["lambda_max"] for r in t.rows]) for name, t in trackers.items()}
    lc = lams["cold"]
    return {
        "params": sample.num_params,
        "measurements": len(hvps["cold"]),
        **{name: float(h.mean()) for name, h in hvps.items()},
        **{
            f"ratio_{name}": float(hvps["cold"].mean() / hvps[name].mean())
            for name in ("warm", "block", "mixed")
        },
        **{f"passes_{name}": float(np.mean(trackers[name].passes[1:])) for name in ("block", "mixed")},
        "max_rel_diff": max(float(np.max(np.abs(v - lc) / np.abs(lc))) for v in lams.values()),
        **{f"misses_{name}": n for name, n in misses.items()},
        "lambda_first": float(lc[0]),
        "lambda_last": float(lc[-1]),
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
    ap.add_argument(
        "--warm-cold-only",
        action="store_true",
        help="only the warm vs cold table (--figure is still required)",
    )
    args = ap.parse_args()
    torch.set_num_threads(1)
    q = args.quick
    lines = warm_cold_table(q)
    if args.warm_cold_only:
        _report(lines, args.out)
        return
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
    _report(lines, args.out)


def _report(lines: list[str], out: Path | None) -> None:
    report = "\n".join(lines) + "\n"
    print(report)
    if out is not None:
        atomic_write_text(out, report)


def warm_cold_table(quick: bool) -> list[str]:
    """HVPs per measurement of the four starts (see :func:`warm_vs_cold`), as Markdown lines."""
    lines = ["### Warm vs cold start: HVPs per measurement (full-batch GD, lr 0.1)", ""]
    lines += [
        "| model (params) | k | EVERY | tol | steps | measurements | cold HVPs | warm (summed) HVPs, cold/warm "
        "| block start HVPs (passes), cold/block | mixed block HVPs (passes), cold/mixed "
        "| max rel. diff of lambda_max | top eigenvalue missed: warm / block / mixed / cold "
        "| lambda_max first -> last |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    cases = [
        (64, 1, 1, 1e-4, 30),
        (64, 1, 1, 1e-3, 30),
        (64, 1, 10, 1e-4, 300),
        (64, 1, 10, 1e-3, 300),
        (64, 1, 50, 1e-4, 500),
        (64, 3, 1, 1e-4, 30),
        (64, 3, 10, 1e-4, 300),
        (64, 5, 10, 1e-4, 300),
        (256, 1, 10, 1e-4, 300),
        (256, 3, 10, 1e-4, 300),
    ]
    if quick:
        cases = [(64, 1, 1, 1e-3, 5), (64, 3, 10, 1e-3, 30)]
    for width, k, every, tol, steps in cases:
        r = warm_vs_cold(width, 0.1, steps, every, tol, k)
        lines.append(
            f"| tanh MLP w={width} ({r['params']:,}) | {k} | {every} | {tol:g} | {steps} | {r['measurements']} "
            f"| {r['cold']:.1f} | {r['warm']:.1f}, {r['ratio_warm']:.2f}x "
            f"| {r['block']:.1f} ({r['passes_block']:.1f}), {r['ratio_block']:.2f}x "
            f"| {r['mixed']:.1f} ({r['passes_mixed']:.1f}), {r['ratio_mixed']:.2f}x | {r['max_rel_diff']:.1e} "
            f"| {r['misses_warm']} / {r['misses_block']} / {r['misses_mixed']} / {r['misses_cold']} "
            f"| {r['lambda_first']:.3f} -> {r['lambda_last']:.3f} |"
        )
        print(lines[-1], flush=True)
    return lines


if __name__ == "__main__":
    main()
