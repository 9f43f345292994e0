"""Hessian-vector products side by side in one process: landscape, PyHessian, hessian-eigenthings,
curvlinops, against the physical limit (one gradient pass over the same data).

Every method multiplies the Hessian of the same mean loss over the same batches; the script checks
that their products agree (relative difference to landscape's) before it times them. Timing is round
robin over the methods, median of ``--repeats``, so a load change on a shared machine hits all of them.

Cases: ``cnn`` (registry CNN with batch norm in eval mode, CIFAR-shaped input), ``wrn`` (WRN-10-width,
pre-activation, so no batch norm is folded) and ``mlp`` (tanh MLP on 64 features, no batch norm). ``--scaling`` adds the cost of one product against three widths and
three sample sizes; ``--eigen`` the end-to-end top-k to a tolerance (products, data passes, seconds).

Run:  OMP_NUM_THREADS=1 python benchmarks/bench_hvp.py [--case cnn|mlp] [--width 56] [--samples 1024]
      [--batch-size 256] [--repeats 3] [--scaling] [--eigen] [--device cpu|cuda] [--out FILE]
Peers are optional imports (pip install pyhessian hessian-eigenthings curvlinops-for-pytorch); a
missing one is reported and skipped.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from landscape.hessian import HessianOperator, lanczos
from landscape.models.builders import build_model
from landscape.objective.core import Objective

Batches = list[tuple[torch.Tensor, torch.Tensor]]


def make_case(
    case: str, width: int, samples: int, device: torch.device, seed: int = 0
) -> tuple[nn.Module, Batches]:
    """A briefly trained model and its data, split into batches later."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    if case in ("cnn", "wrn"):
        x = torch.randn(samples, 3, 32, 32, generator=gen)
        # wrn: WRN-10-width, pre-activation blocks whose batch norms no layer before them can absorb
        model: nn.Module = (
            build_model("cnn", in_channels=3, width=width)
            if case == "cnn"
            else build_model("wrn", depth=10, width=width)
        )
    else:
        x = torch.randn(samples, 64, generator=gen)
        model = nn.Sequential(
            nn.Linear(64, width), nn.Tanh(), nn.Linear(width, width), nn.Tanh(), nn.Linear(width, 10)
        )
    # labels from a random linear teacher, so a few steps of training find structure
    teacher = torch.randn(x[0].numel(), 10, generator=gen)
    y = (x.flatten(1) @ teacher).argmax(1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    for _ in range(30):
        idx = torch.randint(0, samples, (64,), generator=gen)
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval().to(device), [(x.to(device), y.to(device))]


def split(data: Batches, batch_size: int) -> Batches:
    x, y = data[0]
    return [(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(y), batch_size)]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def round_robin(fns: dict[str, Callable[[], Any]], repeats: int, device: torch.device) -> dict[str, float]:
    for fn in fns.values():  # warm-up (and graph builds)
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync(device)
            t = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - t)
    return {k: float(np.median(v)) for k, v in times.items()}


def peer_products(
    model: nn.Module, batches: Batches, v: torch.Tensor, V: torch.Tensor
) -> dict[str, Callable]:
    """Each available peer's ``H v`` (and curvlinops' block) over the same batches, as flat tensors."""
    params = [p for p in model.parameters() if p.requires_grad]
    sizes = [p.numel() for p in params]

    def as_list(flat: torch.Tensor) -> list[torch.Tensor]:
        return [c.view_as(p) for c, p in zip(torch.split(flat, sizes), params)]

    fns: dict[str, Callable] = {}
    try:
        from pyhessian import hessian as PyHessian

        pyh = PyHessian(model, nn.CrossEntropyLoss(), dataloader=batches, cuda=v.is_cuda)
        vs = as_list(v)

        def pyhessian_product() -> torch.Tensor:
            _, hv = pyh.dataloader_hv_product(vs)
            return torch.cat([h.reshape(-1) for h in hv])

        fns["PyHessian 0.1"] = pyhessian_product
    except ImportError:
        print("(PyHessian not installed: skipped)")
    try:
        from hessian_eigenthings import HessianOperator as EigenthingsOperator
        from hessian_eigenthings import supervised_loss

        het = EigenthingsOperator(model, batches, supervised_loss(F.cross_entropy))
        fns["hessian-eigenthings 1.0.0a5"] = lambda: het.matvec(v)
    except ImportError:
        print("(hessian-eigenthings not installed: skipped)")
    try:
        from curvlinops import HessianLinearOperator

        cl = HessianLinearOperator(model, nn.CrossEntropyLoss(), params, batches, check_deterministic=False)
        fns["curvlinops 3.0.1"] = lambda: cl @ v
        fns[f"curvlinops 3.0.1, block of {V.shape[1]} (per vector)"] = lambda: cl @ V
    except ImportError:
        print("(curvlinops not installed: skipped)")
    return fns


def gradient_pass(model: nn.Module, batches: Batches) -> Callable[[], None]:
    params = [p for p in model.parameters() if p.requires_grad]

    def run() -> None:
        for x, y in batches:
            torch.autograd.grad(F.cross_entropy(model(x), y), params)

    return run


def grads_batched_block(op: HessianOperator, V: torch.Tensor) -> Callable[[], torch.Tensor]:
    """The block of products with one batched double backward per batch (``is_grads_batched``)."""
    k = V.shape[1]
    cols = [c.T.reshape(k, *s) for c, s in zip(torch.split(V, op.sizes), op.shapes)]

    def run() -> torch.Tensor:
        out = torch.zeros_like(V)
        for x, y, w in op.objective.batches():
            with op.objective.model_mode():
                loss = op._batch_loss(x, y)
            grads = torch.autograd.grad(loss, op.params, create_graph=True)
            hv = torch.autograd.grad(grads, op.params, grad_outputs=cols, is_grads_batched=True)
            out.add_(torch.cat([h.reshape(k, -1) for h in hv], dim=1).T, alpha=w)
        return out

    return run


def compiled_product(op: HessianOperator, v: torch.Tensor, say: Callable[[str], None]) -> Callable:
    """``torch.compile`` of the functional forward-over-reverse product of one batch, over the batches."""
    names = op.param_names
    tangents = dict(zip(names, op.unflatten(v)))

    def batch_hvp(params: dict, x: torch.Tensor, y: torch.Tensor) -> tuple:
        def grad_of(p: dict) -> dict:
            with op.objective.model_mode():
                return torch.func.grad(lambda q: op._functional_batch_loss(q, x, y))(p)

        return torch.func.jvp(grad_of, (params,), (tangents,))[1]

    compiled = torch.compile(batch_hvp)
    params = op.objective.param_dict()
    t = time.perf_counter()
    batches = list(op.objective.batches())
    for x, y, _ in batches:  # every batch shape compiles once
        compiled(params, x, y)
    say(f"(torch.compile: {time.perf_counter() - t:.0f} s to compile)")

    def run() -> torch.Tensor:
        out = torch.zeros_like(v)
        for x, y, w in batches:
            hv = compiled(params, x, y)
            out.add_(torch.cat([hv[n].reshape(-1) for n in names]), alpha=w)
        return out

    return run


def product_table(args: argparse.Namespace, say: Callable[[str], None]) -> None:
    dev = torch.device(args.device)
    model, data = make_case(args.case, args.width, args.samples, dev)
    batches = split(data, args.batch_size)
    obj = Objective(model, batches, device=dev)
    k = args.block
    gen = torch.Generator().manual_seed(1)
    V = torch.randn(obj.num_params, k, generator=gen).to(dev)
    v = V[:, 0].contiguous()
    ops = {
        "rev-rev": HessianOperator(obj, mode="rev-rev", block_size=k),
        "fwd-rev": HessianOperator(obj, mode="fwd-rev", block_size=k),
        "rev-rev unfolded": HessianOperator(obj, mode="rev-rev", block_size=k, fold_batchnorm=False),
        "cached": HessianOperator(obj, mode="rev-rev", cache_graphs=True),
    }
    folded = ops["rev-rev"].folded
    fns: dict[str, Callable] = {"gradient pass (the limit)": gradient_pass(model, batches)}
    fns["landscape rev-rev (default on CPU)"] = lambda: ops["rev-rev"] @ v
    fns["landscape fwd-rev"] = lambda: ops["fwd-rev"] @ v
    if folded.pairs:
        fns["landscape rev-rev, batch norm not folded"] = lambda: ops["rev-rev unfolded"] @ v
    if not args.no_blocks:
        fns[f"landscape rev-rev, block of {k} (per vector)"] = lambda: ops["rev-rev"] @ V
        fns[f"landscape fwd-rev, block of {k} (per vector)"] = lambda: ops["fwd-rev"] @ V
    fns["landscape rev-rev, cached graphs"] = lambda: ops["cached"] @ v
    if not args.no_blocks:
        blocks_batched = grads_batched_block(ops["rev-rev"], V)
        fns[f"rev-rev, block of {k} by is_grads_batched (per vector; not used)"] = blocks_batched
    if args.compile:
        fns["torch.compile of the fwd-rev product (not used)"] = compiled_product(ops["fwd-rev"], v, say)
    peers = peer_products(model, batches, v, V)
    fns.update({n: f for n, f in peers.items() if not (args.no_blocks and "block of" in n)})
    ref = ops["rev-rev unfolded"] @ v
    diffs = {}
    for name, fn in fns.items():
        if name.startswith("gradient"):
            continue
        out = fn()
        out = out[:, 0] if out.dim() == 2 else out
        diffs[name] = float((out - ref).abs().max() / ref.abs().max())
    times = round_robin(fns, args.repeats, dev)
    g = times["gradient pass (the limit)"]
    say(
        f"### {args.case} (width {args.width}): {obj.num_params:,} parameters, {args.samples} samples in "
        f"batches of {args.batch_size}, {dev}, {torch.get_num_threads()} threads; batch norm folded: "
        f"{len(folded.pairs)} pair(s){'' if folded.pairs else ' (' + folded.reason + ')'}"
    )
    say("")
    say("| method | ms per product | / gradient pass | max rel. diff to unfolded rev-rev |")
    say("|---|---|---|---|")
    for name, t in times.items():
        per = t / k if "block of" in name else t
        diff = "" if name not in diffs else f"{diffs[name]:.1e}"
        say(f"| {name} | {per * 1e3:.4g} | {per / g:.2f} | {diff} |")
    say("")


def scaling_table(args: argparse.Namespace, say: Callable[[str], None]) -> None:
    dev = torch.device(args.device)
    say(f"### Scaling ({args.case}): one product / one gradient pass, batches of {args.batch_size}")
    say("")
    say(
        "| width | params | samples | gradient ms | landscape | landscape block (per vector) | PyHessian | hessian-eigenthings | curvlinops |"
    )
    say("|---|---|---|---|---|---|---|---|---|")
    cells = [(w, args.scaling_samples[1]) for w in args.scaling_widths]
    cells += [(args.scaling_widths[1], n) for n in args.scaling_samples if n != args.scaling_samples[1]]
    for width, samples in cells:
        model, data = make_case(args.case, width, samples, dev)
        batches = split(data, args.batch_size)
        obj = Objective(model, batches, device=dev)
        V = torch.randn(obj.num_params, args.block, generator=torch.Generator().manual_seed(1)).to(dev)
        v = V[:, 0].contiguous()
        op = HessianOperator(obj, block_size=args.block)
        fns = {"grad": gradient_pass(model, batches), "ours": lambda op=op, v=v: op @ v}
        fns["block"] = lambda op=op, V=V: op @ V
        peers = peer_products(model, batches, v, V)
        fns.update({name.split(" ")[0]: fn for name, fn in peers.items() if "block" not in name})
        t = round_robin(fns, args.repeats, dev)
        g = t["grad"]
        cols = [t["ours"] / g, t["block"] / args.block / g]
        cols += [
            t[p] / g if p in t else float("nan") for p in ("PyHessian", "hessian-eigenthings", "curvlinops")
        ]
        say(
            f"| {width} | {obj.num_params:,} | {samples} | {g * 1e3:.4g} | "
            + " | ".join(f"{c:.2f}" for c in cols)
            + " |"
        )
    say("")


def eigen_table(args: argparse.Namespace, say: Callable[[str], None]) -> None:
    """Top-k to a tolerance, end to end: products, passes over the data, seconds, error."""
    dev = torch.device(args.device)
    model, data = make_case(args.case, args.width, args.samples, dev)
    batches = split(data, args.batch_size)
    k = args.top_k
    obj = Objective(model, batches, device=dev)
    ref_obj = Objective(model, batches, device=dev, dtype=torch.float64)
    ref = lanczos(HessianOperator(ref_obj), k, tol=1e-10, seed=7).eigenvalues
    model.float()
    rows: list[tuple[str, int, int, float, float]] = []

    def record(name: str, run: Callable[[], tuple[np.ndarray, int, int]]) -> None:
        t = time.perf_counter()
        vals, products, passes = run()
        sec = time.perf_counter() - t
        err = float(np.max(np.abs(np.sort(vals)[::-1][:k] - ref) / np.abs(ref)))
        rows.append((name, products, passes, sec, err))

    def ours() -> tuple[np.ndarray, int, int]:
        op = HessianOperator(obj)
        res = lanczos(op, k, tol=args.tol, seed=0)
        return res.eigenvalues, res.matvecs, op.passes

    record(f"landscape Lanczos (tol {args.tol:g})", ours)
    try:
        from landscape.hessian import block_lanczos

        def ours_block() -> tuple[np.ndarray, int, int]:
            op = HessianOperator(obj)
            res = block_lanczos(op, k, tol=args.tol, seed=0)
            return res.eigenvalues, res.matvecs, op.passes

        record(f"landscape block Lanczos (tol {args.tol:g})", ours_block)
    except ImportError:
        pass
    for name, run in peer_eigen(model, batches, k, args.tol, rows[0][1]).items():
        record(name, run)
    say(f"### Top-{k} end to end ({args.case}, width {args.width}, {args.samples} samples, float32)")
    say("")
    say("Reference: float64 Lanczos, tol 1e-10: " + ", ".join(f"{x:.6g}" for x in ref))
    say("")
    say("| method | products | passes over the data | seconds | max rel. error |")
    say("|---|---|---|---|---|")
    for name, products, passes, sec, err in rows:
        say(f"| {name} | {products} | {passes} | {sec:.1f} | {err:.1e} |")
    say("")


def peer_eigen(model: nn.Module, batches: Batches, k: int, tol: float, budget: int) -> dict[str, Callable]:
    out: dict[str, Callable] = {}
    params = [p for p in model.parameters() if p.requires_grad]
    try:
        from pyhessian import hessian as PyHessian

        def pyh() -> tuple[np.ndarray, int, int]:
            h = PyHessian(model, nn.CrossEntropyLoss(), dataloader=batches, cuda=False)
            calls = [0]
            inner = h.dataloader_hv_product

            def counted(v: Any) -> Any:
                calls[0] += 1
                return inner(v)

            h.dataloader_hv_product = counted
            vals, _ = h.eigenvalues(top_n=k, tol=1e-3)
            return np.array(vals), calls[0], calls[0]

        out["PyHessian power iteration (its tol 1e-3)"] = pyh
    except ImportError:
        pass
    try:
        from hessian_eigenthings import HessianOperator as EigenthingsOperator
        from hessian_eigenthings import lanczos as eigenthings_lanczos
        from hessian_eigenthings import supervised_loss

        def het() -> tuple[np.ndarray, int, int]:
            op = EigenthingsOperator(model, batches, supervised_loss(F.cross_entropy))
            calls = [0]
            inner = op.matvec

            def counted(v: torch.Tensor) -> torch.Tensor:
                calls[0] += 1
                return inner(v)

            op.matvec = counted  # type: ignore[method-assign]
            # a fixed number of steps without restarts: given the products landscape's Lanczos used
            res = eigenthings_lanczos(op, k=k, max_iter=budget, tol=tol, which="LA", seed=0)
            return res.eigenvalues.double().numpy(), calls[0], calls[0]

        out[f"hessian-eigenthings Lanczos, {budget} steps (landscape's product count)"] = het
    except ImportError:
        pass
    try:
        import scipy.sparse.linalg as sla
        from curvlinops import HessianLinearOperator

        def cl() -> tuple[np.ndarray, int, int]:
            op = HessianLinearOperator(
                model, nn.CrossEntropyLoss(), params, batches, check_deterministic=False
            )
            calls = [0]

            def mv(x: np.ndarray) -> np.ndarray:
                calls[0] += 1
                t = torch.from_numpy(np.asarray(x, dtype=np.float32).reshape(-1))
                return (op @ t).numpy().astype(np.float64)

            n = sum(p.numel() for p in params)
            lin = sla.LinearOperator((n, n), matvec=mv, dtype=np.float64)
            vals = sla.eigsh(lin, k=k, which="LA", tol=tol, v0=np.ones(n))[0]
            return vals, calls[0], calls[0]

        out[f"curvlinops + scipy eigsh (tol {tol:g})"] = cl
    except ImportError:
        pass
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--case", choices=["cnn", "mlp", "wrn"], default="cnn")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--width", type=int, default=56)
    ap.add_argument("--samples", type=int, default=1024)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--block", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--scaling", action="store_true")
    ap.add_argument("--scaling-widths", type=int, nargs=3, default=[16, 32, 64])
    ap.add_argument("--scaling-samples", type=int, nargs=3, default=[256, 512, 1024])
    ap.add_argument("--eigen", action="store_true")
    ap.add_argument("--top-k", type=int, default=5)
    ap.add_argument("--tol", type=float, default=1e-6)
    ap.add_argument("--no-products", action="store_true", help="skip the per-product table")
    ap.add_argument("--no-blocks", action="store_true", help="skip the block rows (slow on large CNNs)")
    ap.add_argument(
        "--compile", action="store_true", help="also time a torch.compile'd product (slow to compile)"
    )
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    lines: list[str] = []

    def say(s: str) -> None:
        print(s, flush=True)
        lines.append(s)

    say(f"## Hessian-vector products (torch {torch.__version__}, {torch.get_num_threads()} threads)")
    say("")
    if not args.no_products:
        product_table(args, say)
    if args.scaling:
        scaling_table(args, say)
    if args.eigen:
        eigen_table(args, say)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
