"""Stochastic trace estimators with standard errors and a target-accuracy mode.

* **Hutchinson** (Hutchinson 1989): ``tr(A) ~ (1/m) sum_i z_i^T A z_i`` with Rademacher ``z_i``;
  unbiased with variance ``2 (||A||_F^2 - sum_i a_ii^2) / m``, so the error falls as ``m^(-1/2)``.
* **Hutch++** (Meyer, Musco, Musco & Woodruff 2021, *Hutch++: Optimal Stochastic Trace Estimation*):
  with ``m`` products, sketch ``Q = orth(A S)`` with ``S`` of ``m/3`` Rademacher columns, take
  ``tr(Q^T A Q)`` exactly and Hutchinson's estimate on the deflated ``(I - QQ^T) A (I - QQ^T)`` with
  the remaining ``m/3`` probes. The deflated part has Frobenius norm at most that of the tail of the
  spectrum, so for decaying spectra the error falls as ``1/m`` instead of ``m^(-1/2)``.

The standard error is the sample standard deviation of the stochastic part's probes over the square
root of their number (the sketch part is exact given ``Q``). With ``rtol`` both estimators keep
drawing probes (in blocks) until ``stderr <= rtol * |estimate|`` or ``max_matvecs`` is spent.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch

from landscape.errors import ConfigError, check_choice
from landscape.hessian.operator import operator_info, rademacher
from landscape.hessian.results import TraceResult
from landscape.progress import Progress

TRACE_METHODS = ("hutchinson", "hutch++")
MIN_PROBES = 8


def _apply(op: Any, Z: torch.Tensor, block_size: int) -> torch.Tensor:
    return torch.cat([op @ Z[:, j : j + block_size] for j in range(0, Z.shape[1], block_size)], dim=1)


def _stderr(samples: torch.Tensor) -> float:
    m = samples.numel()
    return float(samples.std(unbiased=True)) / math.sqrt(m) if m > 1 else float("inf")


def _probe_until(
    op: Any,
    n: int,
    *,
    count: int,
    rtol: float | None,
    budget: int,
    offset: float,
    project: Any,
    gen: torch.Generator,
    dtype: torch.dtype,
    device: torch.device,
    block_size: int,
    bar: Progress,
) -> torch.Tensor:
    """Values ``z^T A z`` of (projected) Rademacher probes: ``count`` of them, or until ``rtol``."""
    vals: list[torch.Tensor] = []
    drawn = 0
    while True:
        b = count - drawn if rtol is None else min(block_size, budget - drawn)
        if b <= 0:
            break
        Z = project(rademacher(n, b, generator=gen, dtype=dtype, device=device))
        AZ = _apply(op, Z, block_size)
        vals.append((Z * AZ).sum(dim=0).double().cpu())
        drawn += b
        bar.update(b)
        if rtol is not None and drawn >= MIN_PROBES:
            s = torch.cat(vals)
            est = offset + float(s.mean())
            if _stderr(s) <= rtol * abs(est):
                break
    return torch.cat(vals) if vals else torch.zeros(0, dtype=torch.float64)


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
    """
    return trace(
        op,
        method="hutchinson",
        matvecs=matvecs,
        rtol=rtol,
        max_matvecs=max_matvecs,
        seed=seed,
        block_size=block_size,
        quiet=quiet,
    )


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
    """
    return trace(
        op,
        method="hutch++",
        matvecs=matvecs,
        rtol=rtol,
        max_matvecs=max_matvecs,
        seed=seed,
        block_size=block_size,
        quiet=quiet,
    )


def trace(
    op: Any,
    *,
    method: str = "hutch++",
    matvecs: int = 99,
    rtol: float | None = None,
    max_matvecs: int = 10_000,
    seed: int = 0,
    block_size: int = 8,
    quiet: bool = True,
) -> TraceResult:
    """Stochastic estimate of ``tr(op)`` by ``method`` (``'hutchinson'`` or ``'hutch++'``).

    See :func:`hutchinson` and :func:`hutchpp` for the arguments.

    Returns:
        :class:`TraceResult` with the estimate, its standard error, and the products used.
    """
    t0 = time.perf_counter()
    check_choice("method", method, TRACE_METHODS)
    n, dtype, device = operator_info(op)
    if matvecs < (3 if method == "hutch++" else 2):
        raise ConfigError(f"matvecs={matvecs!r} is too small for {method} (at least 2, 3 for hutch++)")
    if rtol is not None and not rtol > 0:
        raise ConfigError(f"rtol={rtol!r} must be > 0")
    if block_size < 1:
        raise ConfigError(f"block_size={block_size!r} must be >= 1")
    gen = torch.Generator().manual_seed(int(seed))
    budget = max_matvecs if rtol is not None else matvecs
    used = 0
    exact = 0.0
    with Progress(budget, f"trace ({method})", quiet=quiet, unit="hvp") as bar:
        project: Any = lambda Z: Z  # noqa: E731
        if method == "hutch++":
            s = min(matvecs // 3, n)
            S = rademacher(n, s, generator=gen, dtype=dtype, device=device)
            Q, _ = torch.linalg.qr(_apply(op, S, block_size))
            AQ = _apply(op, Q, block_size)
            exact = float((Q * AQ).sum())
            used = 2 * s
            bar.update(used)

            def project(Z: torch.Tensor, Q: torch.Tensor = Q) -> torch.Tensor:
                return Z - Q @ (Q.T @ Z)

        full_sketch = method == "hutch++" and s == n  # the sketch spans the space: exact
        vals = _probe_until(
            op,
            n,
            count=0 if full_sketch else matvecs - used,
            rtol=None if full_sketch else rtol,
            budget=budget - used,
            offset=exact,
            project=project,
            gen=gen,
            dtype=dtype,
            device=device,
            block_size=block_size,
            bar=bar,
        )
    used += vals.numel()
    est = exact + (float(vals.mean()) if vals.numel() else 0.0)
    err = 0.0 if vals.numel() == 0 else _stderr(vals)
    return TraceResult(
        estimate=est,
        stderr=err,
        matvecs=used,
        method=method,
        samples=int(vals.numel()),
        rtol=rtol,
        converged=True if rtol is None else bool(err <= rtol * abs(est)),
        seconds=time.perf_counter() - t0,
    )
