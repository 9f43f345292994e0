"""Hutchinson's stochastic trace estimator (Hutchinson 1989).

``tr(A) ~ (1/m) sum_i z_i^T A z_i`` with Rademacher ``z_i``; unbiased with variance
``2 (||A||_F^2 - sum_i a_ii^2) / m``, so the error falls as ``m^(-1/2)``.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from landscape.hessian.operator import operator_info
from landscape.hessian.results import TraceResult
from landscape.hessian.trace_common import check_trace_arguments, probe_result, probe_until
from landscape.progress import Progress


def hutchinson(
    op: Any,
    *,
    matvecs: int = 100,
    rtol: float | None = None,
    max_matvecs: int = 10_000,
    seed: int = 0,
    block_size: int = 8,
    quiet: bool = True,
) -> TraceResult:
    """Hutchinson's estimate of ``tr(op)`` with Rademacher probes.

    Args:
        op: ``(n, n)`` operator.
        matvecs: number of probes (fixed-budget mode).
        rtol: stop when the standard error is at most ``rtol * |estimate|`` (at least 8 probes); the
            budget is then ``max_matvecs``.
        max_matvecs: the most products in ``rtol`` mode.
        seed: seed of the probes.
        block_size: probes pushed through the operator at once (one data pass).
        quiet: no progress bar.

    Returns:
        :class:`TraceResult` with the estimate, its standard error, and the products used.
    """
    t0 = time.perf_counter()
    n, dtype, device = operator_info(op)
    check_trace_arguments("hutchinson", matvecs, rtol, block_size)
    gen = torch.Generator().manual_seed(int(seed))
    budget = max_matvecs if rtol is not None else matvecs
    with Progress(budget, "trace (hutchinson)", quiet=quiet, unit="hvp") as bar:
        vals = probe_until(
            op,
            n,
            count=matvecs,
            rtol=rtol,
            budget=budget,
            offset=0.0,
            project=lambda Z: Z,
            gen=gen,
            dtype=dtype,
            device=device,
            block_size=block_size,
            bar=bar,
        )
    return probe_result("hutchinson", 0.0, vals, 0, rtol, t0)
