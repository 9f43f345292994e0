"""Hessian-vector products on Hugging Face GPT-2 (issue 20): cost against a gradient pass, peak memory,
error against the exact float64 product, and top-5 eigenvalues to a tolerance.

Every model is a ``transformers`` GPT-2 built from a config (never a download) in its default attention
implementation ("sdpa"), fed right-padded dict batches (``input_ids``, ``attention_mask``, ``labels``
with -100 on padding) through :class:`landscape.objective.core.Objective`, whose loss is the mean over
the counted tokens of the whole set. The unit is one gradient pass over the same batches
(``Objective.gradient``, on the default attention kernel); the same pass on the math kernel (the one
exact products run on) is timed beside it.

Timing: one process, one thread, round robin over the methods, median of ``--repeats`` after one
warm-up call, so a load change on the shared machine hits every method. Memory: every measurement runs
once, cold, in a fresh ``multiprocessing`` spawn child that builds the same model and data; the peak
resident set is reset after the set-up (``/proc/self/clear_refs``) and the figure is the peak
(``VmHWM`` of ``/proc/self/status``) after the call minus the resident set before it. Not
``resource.getrusage(...).ru_maxrss``: in a spawn child it is the maximum with the peak of the forked
parent before its ``exec`` (1,006,736 KiB in a child of a parent holding 800 MB, whose own peak was
15,720 KiB), and it cannot be reset; tracemalloc does not see torch's allocations. Each product is compared with the exact float64 product of the objective it
computes (relative 2-norm error): landscape's is the token mean; PyHessian and hessian-eigenthings
average per-batch token means (PyHessian weights batches by sequences, hessian-eigenthings equally;
with equal batches both are the mean of the batch means).

Run:  python benchmarks/bench_transformers.py [--repeats 3] [--gpt2-small] [--eigen] [--no-memory]
      [--out FILE]
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import gc
import multiprocessing
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from landscape.hessian import HessianOperator, lanczos
from landscape.hessian.attention import second_order_attention
from landscape.hessian.finite_difference import step_size
from landscape.objective.core import Objective

Batches = list[dict[str, torch.Tensor]]
GRADIENT = "gradient pass, default attention (the unit)"
GRADIENT_MATH = "gradient pass, math attention"


@dataclass(frozen=True)
class Case:
    """A GPT-2 shape and its padded data."""

    name: str
    n_layer: int
    n_embd: int
    n_head: int
    vocab: int
    n_positions: int
    seq_len: int
    sequences: int
    batch_size: int
    train_steps: int


def small_case(n_embd: int, seq_len: int) -> Case:
    return Case(f"GPT-2, 2 layers, n_embd {n_embd}, T {seq_len}", 2, n_embd, 4, 512, 128, seq_len, 8, 4, 20)


# 124M parameters; two batches of one sequence each, so that no product reuses a cached graph
GPT2_SMALL = Case("GPT-2-small shape (124M)", 12, 768, 12, 50257, 1024, 32, 2, 1, 0)


def build_model(case: Case, batches: Batches) -> nn.Module:
    """The case's GPT-2 from a seeded random init, then a few AdamW steps on its own data."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(
        n_layer=case.n_layer,
        n_embd=case.n_embd,
        n_head=case.n_head,
        vocab_size=case.vocab,
        n_positions=case.n_positions,
        bos_token_id=0,
        eos_token_id=0,
    )
    model = GPT2LMHeadModel(config)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for step in range(case.train_steps):  # off the random init: a Hessian with some structure
        loss = model(**batches[step % len(batches)]).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def padded_batches(case: Case, seed: int = 0) -> Batches:
    """Right-padded random token sequences of real lengths in [T/2, T] (the first one full)."""
    g = torch.Generator().manual_seed(seed)
    T, N = case.seq_len, case.sequences
    lengths = torch.randint(T // 2, T + 1, (N,), generator=g)
    lengths[0] = T
    mask = torch.arange(T)[None, :] < lengths[:, None]
    ids = torch.where(mask, torch.randint(1, case.vocab, (N, T), generator=g), 0)
    labels = torch.where(mask, ids, -100)
    b = case.batch_size
    return [
        {"input_ids": ids[i : i + b], "attention_mask": mask[i : i + b].long(), "labels": labels[i : i + b]}
        for i in range(0, N, b)
    ]


def make_case(case: Case) -> tuple[nn.Module, Batches]:
    batches = padded_batches(case)
    return build_model(case, batches), batches


class TokenLogits(nn.Module):
    """What PyHessian needs: one tensor in, one tensor out. ``packed`` is ``(N, 2, T)``: token ids and
    the attention mask; the output is the causally shifted logits, flattened to ``(N (T-1), V)``."""

    def __init__(self, gpt: nn.Module) -> None:
        super().__init__()
        self.gpt = gpt

    def forward(self, packed: torch.Tensor) -> torch.Tensor:
        logits = self.gpt(input_ids=packed[:, 0], attention_mask=packed[:, 1]).logits
        return logits[:, :-1].reshape(-1, logits.shape[-1])


def pyhessian_batches(batches: Batches) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(packed inputs, shifted flat labels)`` for :class:`TokenLogits` and a flat cross-entropy."""
    return [
        (torch.stack([b["input_ids"], b["attention_mask"]], dim=1), b["labels"][:, 1:].reshape(-1))
        for b in batches
    ]


def probe(n: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A seeded random unit vector (Lanczos multiplies unit vectors; a fixed difference step depends on it)."""
    v = torch.randn(n, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    return (v / v.norm()).to(dtype)


def factories(model: nn.Module, batches: Batches) -> dict[str, Callable[[], Callable[[], Any]]]:
    """Method name -> a builder of its call (set-up, such as operators, outside the timed call)."""
    obj = Objective(model, batches)
    v = probe(obj.num_params)

    def gradient(math: bool) -> Callable[[], Any]:
        def run() -> Any:
            if not math:
                return obj.gradient()
            with second_order_attention():
                return obj.gradient()

        return run

    def ours(**kw: Any) -> Callable[[], Any]:
        op = HessianOperator(obj, fallback=False, **kw)
        return lambda: op @ v

    out: dict[str, Callable[[], Callable[[], Any]]] = {
        GRADIENT: lambda: gradient(False),
        GRADIENT_MATH: lambda: gradient(True),
        "landscape exact rev-rev": lambda: ours(mode="rev-rev"),
        "landscape exact fwd-rev": lambda: ours(mode="fwd-rev"),
        "landscape finite-difference": lambda: ours(hvp="finite-difference"),
    }
    out.update(peer_factories(model, batches, obj.param_names, v))
    return out


def on_math(fn: Callable[[], Any]) -> Callable[[], Any]:
    def run() -> Any:
        with sdpa_kernel(SDPBackend.MATH):
            return fn()

    return run


def peer_factories(
    model: nn.Module, batches: Batches, names: list[str], v: torch.Tensor
) -> dict[str, Callable[[], Callable[[], Any]]]:
    """PyHessian 0.1 and hessian-eigenthings on the default and on the math attention kernel."""
    out: dict[str, Callable[[], Callable[[], Any]]] = {}
    try:
        from pyhessian import hessian as PyHessian

        def pyhessian(math: bool) -> Callable[[], Any]:
            wrapped = TokenLogits(model)
            crit = nn.CrossEntropyLoss(ignore_index=-100)
            h = PyHessian(wrapped, crit, dataloader=pyhessian_batches(batches), cuda=False)
            got = [n.removeprefix("gpt.") for n, p in wrapped.named_parameters() if p.requires_grad]
            assert got == names, "PyHessian's parameter order differs from landscape's"
            vs = [c.view_as(p) for c, p in zip(torch.split(v, [p.numel() for p in h.params]), h.params)]

            def run() -> torch.Tensor:
                return torch.cat([t.reshape(-1) for t in h.dataloader_hv_product(vs)[1]])

            return on_math(run) if math else run

        out["PyHessian 0.1, default attention"] = lambda: pyhessian(False)
        out["PyHessian 0.1, math attention"] = lambda: pyhessian(True)
    except ImportError:
        print("(PyHessian not installed: skipped)")
    try:
        import hessian_eigenthings as het

        def eigenthings(math: bool, method: str) -> Callable[[], Any]:
            op = het.HessianOperator(model, batches, het.hf_lm_loss(), method=method)  # type: ignore[arg-type]
            assert list(het.select_parameters(model, None)) == names, "hessian-eigenthings' order differs"
            run = lambda: op.matvec(v)  # noqa: E731
            return on_math(run) if math else run

        ver = het.__version__
        out[f"hessian-eigenthings {ver}, default attention"] = lambda: eigenthings(False, "autograd")
        out[f"hessian-eigenthings {ver}, math attention"] = lambda: eigenthings(True, "autograd")
        out[f"hessian-eigenthings {ver} finite_difference, default attention"] = lambda: eigenthings(
            False, "finite_difference"
        )
    except ImportError:
        print("(hessian-eigenthings not installed: skipped)")
    return out


def as_flat(out: Any) -> torch.Tensor | None:
    """A product's flat vector; ``None`` for a gradient pass."""
    return out if isinstance(out, torch.Tensor) else None


def reset_peak() -> bool:
    """Reset the peak resident set size to the current one (Linux >= 4.0); False if not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def peak_rss_kib() -> int:
    """The process's peak resident set (``VmHWM``), which ``/proc/self/clear_refs`` resets."""
    with open("/proc/self/status") as fh:
        line = next(ln for ln in fh if ln.startswith("VmHWM:"))
    return int(line.split()[1])


def peak_growth_mib(case: Case, name: str) -> tuple[float | None, bool]:
    """In a fresh child: the peak resident memory one cold call of ``name`` adds, in MiB."""
    torch.set_num_threads(1)
    model, batches = make_case(case)
    run = factories(model, batches)[name]()
    gc.collect()
    # hand the set-up's freed heap back, so that the call's own pages show in the resident set
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    was_reset = reset_peak()
    before = peak_rss_kib()
    try:
        run()
    except RuntimeError:
        return None, was_reset
    return (peak_rss_kib() - before) / 1024.0, was_reset


def memory_in_child(case: Case, name: str) -> tuple[float | None, bool]:
    # a fixed mmap threshold: glibc's adaptive one would serve the call from heap pages that the
    # set-up already made resident, and the growth would read 0
    os.environ["MALLOC_MMAP_THRESHOLD_"] = str(128 * 1024)
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(peak_growth_mib, (case, name))


def references(model: nn.Module, batches: Batches) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The exact float64 products: of the token mean, and of the mean of the batches' token means;
    and the relative error of landscape's float64 finite-difference product."""
    obj = Objective(copy.deepcopy(model), batches, dtype=torch.float64)
    v = probe(obj.num_params, torch.float64)
    token_mean = HessianOperator(obj, mode="rev-rev", fallback=False) @ v
    equal = [(x, y, 1.0 / obj.num_batches) for x, y, _ in obj.batches()]
    batch_mean = HessianOperator(obj, mode="rev-rev", fallback=False, batches=equal) @ v
    fd = HessianOperator(obj, hvp="finite-difference") @ v
    return token_mean, batch_mean, rel_error(fd, token_mean)


def rel_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out.double() - ref).norm() / ref.norm())


def first_line(err: BaseException) -> str:
    return f"{type(err).__name__}: {str(err).strip().splitlines()[0]}"


def product_table(case: Case, args: argparse.Namespace, say: Callable[[str], None]) -> None:
    load0 = os.getloadavg()
    model, batches = make_case(case)
    obj = Objective(model, batches)
    ref_tok, ref_eq, fd64 = references(model, batches)
    fns: dict[str, Callable[[], Any]] = {}
    errors: dict[str, str] = {}
    diffs: dict[str, float] = {}
    for name, build in factories(model, batches).items():
        try:
            fn = build()
            flat = as_flat(fn())  # also the warm-up
        except (RuntimeError, AssertionError) as err:
            errors[name] = first_line(err)
            continue
        fns[name] = fn
        if flat is not None:
            diffs[name] = rel_error(flat, ref_tok if name.startswith("landscape") else ref_eq)
    times = round_robin(fns, args.repeats)
    memory = {n: memory_in_child(case, n) for n in fns} if not args.no_memory else {}
    tokens = sum(int((b["labels"] != -100).sum()) for b in batches)
    say(
        f"### {case.name}: {obj.num_params:,} parameters, {case.sequences} sequences of {case.seq_len} "
        f"(padded; {tokens} real tokens) in {len(batches)} batches, float32, "
        f"{torch.get_num_threads()} thread; attention: {model.config._attn_implementation}"
    )
    say("")
    say(
        f"Load average {load0[0]:.2f} before, {os.getloadavg()[0]:.2f} after. Token mean vs mean of "
        f"batch means (float64 products): {rel_error(ref_eq, ref_tok):.1e} apart; landscape's "
        f"finite-difference product in float64: {fd64:.1e} from the exact one."
    )
    say("")
    say("| method | ms | / gradient pass | peak MiB above set-up | / gradient's | rel. error vs float64 |")
    say("|---|---|---|---|---|---|")
    g, gm = times[GRADIENT], memory.get(GRADIENT, (None, True))[0]
    for name, t in times.items():
        mib = memory.get(name, (None, True))[0]
        mem = "" if mib is None else f"{mib:.1f}"
        mem_ratio = "" if mib is None or not gm else f"{mib / gm:.2f}"
        err = f"{diffs[name]:.1e}" if name in diffs else ""
        say(f"| {name} | {t * 1e3:.4g} | {t / g:.2f} | {mem} | {mem_ratio} | {err} |")
    for name, msg in errors.items():
        say(f"| {name} | fails: `{msg[:300]}` | | | | |")
    if memory and not all(reset for _, reset in memory.values()):
        say("\n(peak not reset in some children: their figure is the growth over the set-up's own peak)")
    say("")


def round_robin(fns: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {k: float(np.median(v)) for k, v in times.items()}


def eigen_table(case: Case, args: argparse.Namespace, say: Callable[[str], None]) -> None:
    """Top-5 to ``args.tol``: float64 and float32, exact and finite-difference products."""
    load0 = os.getloadavg()
    base, batches = make_case(case)
    runs = [
        (dt, hvp, args.tol) for dt in (torch.float64, torch.float32) for hvp in ("exact", "finite-difference")
    ]
    if args.loose_tol:  # what float32 differences reach at a tolerance they can meet
        runs.append((torch.float32, "finite-difference", args.loose_tol))
    rows = []
    for dtype, hvp, tol in runs:
        obj = Objective(copy.deepcopy(base), batches, dtype=dtype)
        op = HessianOperator(obj, hvp=hvp, fallback=False)
        t = time.perf_counter()
        res = lanczos(op, args.top_k, tol=tol, seed=0, max_matvecs=args.max_matvecs)
        sec = time.perf_counter() - t
        rows.append((f"{str(dtype).removeprefix('torch.')}, tol {tol:g}", hvp, res, op.passes, sec))
    ref = rows[0][2].eigenvalues
    say(
        f"### Top-{args.top_k} to tol {args.tol:g} ({case.name}; Lanczos, seed 0, at most "
        f"{args.max_matvecs} products)"
    )
    say("")
    say(f"Load average {load0[0]:.2f} before, {os.getloadavg()[0]:.2f} after.")
    say("Reference (float64, exact): " + ", ".join(f"{x:.8g}" for x in ref))
    say("")
    say(
        "| dtype | product | products | passes over the data | seconds | converged | max rel. error | eigenvalues |"
    )
    say("|---|---|---|---|---|---|---|---|")
    for dt, hvp, res, passes, sec in rows:
        err = float(np.max(np.abs(res.eigenvalues - ref) / np.abs(ref)))
        conv = f"{sum(res.converged)}/{len(res.converged)}"
        vals = ", ".join(f"{x:.6g}" for x in res.eigenvalues)
        say(f"| {dt} | {hvp} | {res.matvecs} | {passes} | {sec:.1f} | {conv} | {err:.1e} | {vals} |")
    say("")


def curvature_by_difference(obj: Objective, u: torch.Tensor, h: float) -> float:
    """``u . (g(w + h u) - g(w - h u)) / 2h`` for a unit ``u``: the curvature that a central difference
    with a step of ``h`` (in weight norm) sees along ``u``. The weights are restored after."""
    saved = [p.detach().clone() for p in obj.params]
    moves = [c.view_as(p) for c, p in zip(torch.split(u, [p.numel() for p in obj.params]), obj.params)]
    grads = []
    try:
        for sign in (1.0, -1.0):
            with torch.no_grad():
                for p, s, d in zip(obj.params, saved, moves):
                    torch.add(s, d, alpha=sign * h, out=p)
            grads.append(torch.cat([g.reshape(-1) for g in obj.gradient()[1]]))
    finally:
        with torch.no_grad():
            for p, s in zip(obj.params, saved):
                p.copy_(s)
    return float(u.double() @ ((grads[0] - grads[1]) / (2.0 * h)).double())


def step_table(case: Case, say: Callable[[str], None]) -> None:
    """Curvature along the top eigenvector by central differences, against the step."""
    base, batches = make_case(case)
    obj64 = Objective(copy.deepcopy(base), batches, dtype=torch.float64)
    res = lanczos(HessianOperator(obj64), 1, tol=1e-10, seed=0)
    assert res.vectors is not None
    u = res.vectors[:, 0] / res.vectors[:, 0].norm()
    objs = {torch.float64: obj64, torch.float32: Objective(copy.deepcopy(base), batches)}
    w = float(torch.sqrt(sum(p.detach().double().pow(2).sum() for p in obj64.params)))
    say(f"### Central differences along the top eigenvector ({case.name}; ||w|| = {w:.2f})")
    say("")
    say(f"lambda_max (float64, exact, tol 1e-10) = {res.eigenvalues[0]:.8g}")
    say("")
    say("| step h (weight norm) | float64: u.Hu | rel. error | float32: u.Hu | rel. error |")
    say("|---|---|---|---|---|")
    steps = [(f"rule, float64: {step_size(w, 1.0, torch.float64):.3g}", step_size(w, 1.0, torch.float64))]
    steps.append((f"rule, float32: {step_size(w, 1.0, torch.float32):.3g}", step_size(w, 1.0, torch.float32)))
    steps += [(f"{h:g}", h) for h in (3e-2, 1e-2, 5e-3, 2e-3, 1e-3, 3e-4)]
    for label, h in steps:
        cells = []
        for dtype, obj in objs.items():
            c = curvature_by_difference(obj, u.to(dtype), h)
            cells.append(f"{c:.8g} | {abs(c - res.eigenvalues[0]) / res.eigenvalues[0]:.1e}")
        say(f"| {label} | " + " | ".join(cells) + " |")
    say("")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--widths", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--lengths", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--gpt2-small", action="store_true", help="add the 124M GPT-2-small shape (minutes)")
    ap.add_argument("--no-small", action="store_true", help="skip the 2-layer width x length tables")
    ap.add_argument("--eigen", action="store_true", help="top-k to a tolerance on the smallest case")
    ap.add_argument("--top-k", type=int, default=5)
    ap.add_argument("--tol", type=float, default=1e-6)
    ap.add_argument("--max-matvecs", type=int, default=300)
    ap.add_argument(
        "--loose-tol", type=float, default=1e-3, help="an extra float32 finite-difference row (0: none)"
    )
    ap.add_argument("--fd-steps", action="store_true", help="central-difference curvature against the step")
    ap.add_argument("--no-memory", action="store_true", help="skip the spawn-child memory figures")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    lines: list[str] = []

    def say(s: str) -> None:
        print(s, flush=True)
        lines.append(s)

    import transformers

    say(
        f"## Transformers (torch {torch.__version__}, transformers {transformers.__version__}, "
        f"{torch.get_num_threads()} thread)"
    )
    say("")
    if not args.no_small:
        for width in args.widths:
            for length in args.lengths:
                product_table(small_case(width, length), args, say)
    if args.gpt2_small:
        product_table(GPT2_SMALL, args, say)
    if args.eigen:
        eigen_table(small_case(args.widths[0], args.lengths[0]), args, say)
    if args.fd_steps:
        step_table(small_case(args.widths[0], args.lengths[0]), say)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
