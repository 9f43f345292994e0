"""Hessian benchmark: landscape vs PyHessian side by side in one process, HVP cost, trace errors.

Model: the registry's small CNN with batch norm on CIFAR-shaped input (3x32x32, width 35: 23,915
parameters), trained briefly on digits upsampled to 32x32 (3 channels), batch norm in eval mode.

Run:  python benchmarks/bench_hessian.py [--device cpu|cuda] [--samples 512] [--quick] [--out FILE]
Prints a Markdown report (and writes it to --out).
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from landscape.analysis import sharpness
from landscape.data.datasets import digits_tensors
from landscape.hessian import HessianOperator, lanczos, trace
from landscape.models.builders import build_model
from landscape.objective.core import Objective


def cifar_shaped_digits(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = digits_tensors("train")
    x = F.interpolate(x[:n].float(), size=32, mode="bilinear", align_corners=False).repeat(1, 3, 1, 1)
    return x, y[:n]


def trained_cnn(x: torch.Tensor, y: torch.Tensor, steps: int, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_model("cnn", in_channels=3, width=35)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(y), (64,), generator=g)
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def timeit(fn: Callable[[], object], repeat: int = 5) -> float:
    fn()
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--train-steps", type=int, default=150)
    ap.add_argument("--trace-seeds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="fewer trace budgets (smoke run)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    lines: list[str] = []

    def say(s: str = "") -> None:
        print(s, flush=True)
        lines.append(s)

    x, y = cifar_shaped_digits(args.samples)
    model = trained_cnn(x, y, args.train_steps)
    dev = torch.device(args.device)

    def objective(dtype: torch.dtype) -> Objective:
        m = build_model("cnn", in_channels=3, width=35)
        m.load_state_dict(model.state_dict())
        return Objective(m, (x, y), batch_size=args.batch_size, device=dev, dtype=dtype)

    obj64 = objective(torch.float64)
    ev = obj64.evaluate()
    say(f"## Hessian benchmark ({dev}, torch {torch.__version__}, {torch.get_num_threads()} threads)")
    say()
    say(
        f"Model: small CNN + BN (eval), 3x32x32 input, {obj64.num_params:,} parameters; "
        f"{args.samples} digits upsampled, {obj64.num_batches} batches of {args.batch_size}; "
        f"train loss {ev.loss:.4f}, accuracy {ev.accuracy:.3f}."
    )
    say()

    # -- reference: tight float64 Lanczos ------------------------------------------------------
    ref = lanczos(HessianOperator(obj64), 5, tol=1e-10, max_matvecs=1000, seed=123)
    lam = ref.eigenvalues
    say(
        f"Reference top-5 (float64 Lanczos, tol 1e-10, {ref.matvecs} matvecs): "
        + ", ".join(f"{v:.8g}" for v in lam)
    )
    say()

    # -- top-1 / top-5 side by side ------------------------------------------------------------
    say("### Top eigenvalues: landscape (Lanczos) vs PyHessian (power iteration), same process")
    say()
    say(
        "| dtype | k | method | matvecs | max rel. error | wall s | matvec ratio PyH/ours | wall ratio PyH/ours |"
    )
    say("|---|---|---|---|---|---|---|---|")
    for dtype in (torch.float64,):
        obj = obj64
        for k in (1, 5):
            ours = sharpness(obj, top_k=k, tol=1e-6 if dtype == torch.float64 else 1e-4, seed=0)
            pyh = sharpness(obj, top_k=k, tol=1e-3, backend="pyhessian", seed=0)
            e_ours = float(np.max(np.abs(ours.eigenvalues - lam[:k]) / np.abs(lam[:k])))
            e_pyh = float(np.max(np.abs(np.sort(pyh.eigenvalues)[::-1] - lam[:k]) / np.abs(lam[:k])))
            name = str(dtype).replace("torch.", "")
            ratio_m = pyh.eigen_matvecs / ours.eigen_matvecs
            ratio_t = pyh.seconds / ours.seconds
            say(
                f"| {name} | {k} | landscape Lanczos (tol {ours.tol:g}) | {ours.eigen_matvecs} | {e_ours:.2e} | {ours.seconds:.2f} | {ratio_m:.2f} | {ratio_t:.2f} |"
            )
            say(
                f"| {name} | {k} | PyHessian power (tol 1e-3) | {pyh.eigen_matvecs} | {e_pyh:.2e} | {pyh.seconds:.2f} | | |"
            )
    say()

    # -- HVP cost over gradient cost -----------------------------------------------------------
    say("### HVP cost / gradient cost (full pass over the data, median of 5)")
    say()
    say(
        "| dtype | gradient s | rev-rev HVP s | fwd-rev HVP s | rev-rev / grad | fwd-rev / grad "
        "| fwd-rev block of 8, per vector / grad | rev-rev cached graphs / grad |"
    )
    say("|---|---|---|---|---|---|---|---|")
    for dtype in (torch.float32, torch.float64):
        obj = obj64 if dtype == torch.float64 else objective(torch.float32)
        v = torch.randn(obj.num_params, dtype=dtype, device=dev)
        V = torch.randn(obj.num_params, 8, dtype=dtype, device=dev)
        rr = HessianOperator(obj, mode="rev-rev")
        fr = HessianOperator(obj, mode="fwd-rev", block_size=8)
        rc = HessianOperator(obj, mode="rev-rev", cache_graphs=True)
        rc @ v  # builds the graphs once; later products only run the double backward
        tg = timeit(obj.gradient)
        trr = timeit(lambda rr=rr, v=v: rr @ v)
        tfr = timeit(lambda fr=fr, v=v: fr @ v)
        tblk = timeit(lambda fr=fr, V=V: fr @ V, repeat=3) / 8
        trc = timeit(lambda rc=rc, v=v: rc @ v)
        name = str(dtype).replace("torch.", "")
        say(
            f"| {name} | {tg:.4f} | {trr:.4f} | {tfr:.4f} | {trr / tg:.2f} | {tfr / tg:.2f} | {tblk / tg:.2f} "
            f"| {trc / tg:.2f} |"
        )
    say()

    # -- trace error vs matvecs ----------------------------------------------------------------
    op = HessianOperator(objective(torch.float32))
    t_ref = trace(HessianOperator(obj64), method="hutch++", matvecs=450 if not args.quick else 90, seed=999)
    say(
        f"### Trace: relative error vs matvecs (reference: Hutch++ with {t_ref.matvecs} matvecs = "
        f"{t_ref.estimate:.6g} +- {t_ref.stderr:.2g}; RMS over {args.trace_seeds} seeds, estimators in float32)"
    )
    say()
    say(
        "| matvecs | Hutchinson RMS rel. error | Hutch++ RMS rel. error | XTrace RMS rel. error "
        "| ratio Hutch++/Hutchinson | ratio XTrace/Hutchinson |"
    )
    say("|---|---|---|---|---|---|")
    budgets = (30, 60, 120) if not args.quick else (30,)
    for m in budgets:
        errs = {}
        for method in ("hutchinson", "hutch++", "xtrace"):
            e = [
                trace(op, method=method, matvecs=m, seed=s).estimate - t_ref.estimate
                for s in range(args.trace_seeds)
            ]
            errs[method] = math.sqrt(float(np.mean(np.square(e)))) / abs(t_ref.estimate)
        h = errs["hutchinson"]
        say(
            f"| {m} | {h:.2e} | {errs['hutch++']:.2e} | {errs['xtrace']:.2e} "
            f"| {errs['hutch++'] / h:.2f} | {errs['xtrace'] / h:.2f} |"
        )
    say()
    if args.out:
        with open(args.out, "w") as fh:
            fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
