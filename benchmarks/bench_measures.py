"""Sharpness-measure benchmark: cost in passes and seconds of every measure on the digits CNN, and
``worst`` with the published adaptive-sharpness settings of Andriushchenko et al. 2023.

Model: the registry's small CNN with batch norm (width 16, 5,178 parameters) trained briefly with SGD
on the digits training split; the measures use a fixed sample of the first ``--samples`` training
images, batch norm in eval mode. Andriushchenko et al. (``sh/eval_sharpness_final.sh`` of
tml-epfl/sharpness-vs-generalization) evaluate ResNets on 1024 CIFAR-10 training points with
m = 128, 20 APGD iterations, adaptive l2 rho in {0.25, 0.5, 1, 2} and adaptive linf rho in
{0.001, 0.002, 0.004, 0.008}; we use the same m, steps and radii, and also run 100 steps to show how
far 20 steps are from converged.

Run:  python benchmarks/bench_measures.py [--samples 1024] [--dtype float32|float64] [--threads 1] [--out FILE]
Prints a Markdown report (and writes it to --out).
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from landscape.data.datasets import digits_tensors
from landscape.measures import MEASURE_NAMES, MeasureOptions, compute_measures, worst_sharpness
from landscape.models.builders import build_model
from landscape.objective.core import Objective


def trained_cnn(x: torch.Tensor, y: torch.Tensor, steps: int, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_model("cnn")
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


def _fmt(v: float | None, digits: int = 4) -> str:
    return "-" if v is None else f"{v:.{digits}g}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=1024)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--train-steps", type=int, default=300)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: no oversubscription on a shared machine)"
    )
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    lines: list[str] = []

    def say(s: str = "") -> None:
        print(s, flush=True)
        lines.append(s)

    x, y = digits_tensors("train")
    model = trained_cnn(x, y, args.train_steps)
    dtype = getattr(torch, args.dtype)
    obj = Objective(model, (x[: args.samples], y[: args.samples]), batch_size=args.batch_size, dtype=dtype)
    ev = obj.evaluate()
    say(
        f"# digits CNN ({obj.num_params} parameters), {obj.num_samples} training images in batches of "
        f"{args.batch_size}, {args.dtype}, batch norm eval; loss {ev.loss:.4f}, accuracy {ev.accuracy:.4f}; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    say()
    say(f"## every measure, default options (seed {args.seed}; relative flatness of `head`)")
    say()
    say("| measure | value | stderr | forward passes | backward passes | HVPs | seconds |")
    say("|---|---|---|---|---|---|---|")
    opts = MeasureOptions(layer="head", seed=args.seed)
    for name in MEASURE_NAMES:
        res = compute_measures(obj, name, opts)[name]
        say(
            f"| {name} | {_fmt(res.value)} | {_fmt(res.stderr, 2)} | {res.forward_passes:.0f} | "
            f"{res.backward_passes:.0f} | {res.hvps} | {res.seconds:.2f} |"
        )
    say()
    say("## `worst`, published adaptive settings (m = 128, Andriushchenko et al. 2023)")
    say()
    say("| norm | rho | steps | value | stderr (over batches) | stalled batches | fwd | bwd | seconds |")
    say("|---|---|---|---|---|---|---|---|---|")
    for norm, rhos in (("l2", (0.25, 0.5, 1.0, 2.0)), ("linf", (0.001, 0.002, 0.004, 0.008))):
        for rho in rhos:
            for steps in (20, 100) if rho in (1.0, 0.004) else (20,):
                t = time.perf_counter()
                res = worst_sharpness(
                    obj,
                    MeasureOptions(
                        rho=rho, perturb_norm=norm, adaptive=True, m=128, steps=steps, seed=args.seed
                    ),
                )
                say(
                    f"| {norm} | {rho} | {steps} | {_fmt(res.value)} | {_fmt(res.stderr, 2)} | "
                    f"{res.details['stalled_batches']}/{res.settings['num_batches']} | {res.forward_passes:.0f} | "
                    f"{res.backward_passes:.0f} | {time.perf_counter() - t:.2f} |"
                )
    say()
    say("## `worst`, random restarts (adaptive, m = 128, 20 steps)")
    say()
    say("| norm | rho | restarts | value | stderr | fwd | bwd | seconds |")
    say("|---|---|---|---|---|---|---|---|")
    for norm, rho in (("l2", 1.0), ("linf", 0.004)):
        for restarts in (1, 4):
            res = worst_sharpness(
                obj,
                MeasureOptions(
                    rho=rho,
                    perturb_norm=norm,
                    adaptive=True,
                    m=128,
                    steps=20,
                    restarts=restarts,
                    seed=args.seed,
                ),
            )
            say(
                f"| {norm} | {rho} | {restarts} | {_fmt(res.value)} | {_fmt(res.stderr, 2)} | "
                f"{res.forward_passes:.0f} | {res.backward_passes:.0f} | {res.seconds:.2f} |"
            )
    if args.out:
        with open(args.out, "w") as fh:
            fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
