"""Hutch++ (Meyer, Musco, Musco & Woodruff 2021, *Hutch++: Optimal Stochastic Trace Estimation*).

With ``m`` products, sketch ``Q = orth(A S)`` with ``S`` of ``m/3`` Rademacher columns, take
``tr(Q^T A Q)`` exactly and Hutchinson's estimate on the deflated ``(I - QQ^T) A (I - QQ^T)`` with
the remaining ``m/3`` probes. The deflated part has Frobenius norm at most that of the tail of the
spectrum, so for decaying spectra the error falls as ``1/m`` instead of ``m^(-1/2)``.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from landscape.hessian.operator import operator_info, rademacher
from landscape.hessian.results import TraceResult
from landscape.hessian.trace_common import apply_blocks, check_trace_arguments, probe_result, probe_until
from landscape.progress import Progress


def hutchpp(
    op: Any,
    *,
    matvecs: int = 99,
    rtol: float | None = None,
    max_matvecs: int = 10_000,
    seed: int = 0,
    block_size: int = 8,
    quiet: bool = True,
) -> TraceResult:
    """Hutch++ estimate of ``tr(op)`` (Meyer et al. 2021): ``matvecs/3`` sketch columns.

    Args:
        op: symmetric ``(n, n)`` operator.
        matvecs: total products (split in thirds: sketch, exact part, Hutchinson on the rest).
        rtol: keep adding residual probes until ``stderr <= rtol |estimate|`` (sketch size stays
            ``matvecs/3``).
        max_matvecs: the most products in ``rtol`` mode.
        seed: seed of the sketch and the probes.
        block_size: vectors per operator application.
        quiet: no progress bar.

    Returns:
        :class:`TraceResult`; the standard error is that of the residual probes (the sketch part is exact).
    """
    t0 = time.perf_counter()
    n, dtype, device = operator_info(op)
    check_trace_arguments("hutch++", matvecs, rtol, block_size)
    gen = torch.Generator().manual_seed(int(seed))
    budget = max_matvecs if rtol is not None else matvecs
    with Progress(budget, "trace (hutch++)", quiet=quiet, unit="hvp") as bar:
        s = min(matvecs // 3, n)
        S = rademacher(n, s, generator=gen, dtype=dtype, device=device)
        Q, _ = torch.linalg.qr(apply_blocks(op, S, block_size))
        exact = float((Q * apply_blocks(op, Q, block_size)).sum())
        used = 2 * s
        bar.update(used)
        full_sketch = s == n  # the sketch spans the space: the trace is exact
        vals = probe_until(
            op,
            n,
            count=0 if full_sketch else matvecs - used,
            rtol=None if full_sketch else rtol,
            budget=budget - used,
            offset=exact,
            project=lambda Z: Z - Q @ (Q.T @ Z),
            gen=gen,
            dtype=dtype,
            device=device,
            block_size=block_size,
            bar=bar,
        )
    return probe_result("hutch++", exact, vals, used, rtol, t0)
