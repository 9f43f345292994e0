"""Stochastic trace estimators with standard errors and a target-accuracy mode.

* **Hutchinson** (Hutchinson 1989): ``tr(A) ~ (1/m) sum_i z_i^T A z_i`` with Rademacher ``z_i``;
  unbiased with variance ``2 (||A||_F^2 - sum_i a_ii^2) / m``, so the error falls as ``m^(-1/2)``.
* **Hutch++** (Meyer, Musco, Musco & Woodruff 2021, *Hutch++: Optimal Stochastic Trace Estimation*):
  with ``m`` products, sketch ``Q = orth(A S)`` with ``S`` of ``m/3`` Rademacher columns, take
  ``tr(Q^T A Q)`` exactly and Hutchinson's estimate on the deflated ``(I - QQ^T) A (I - QQ^T)`` with
  the remaining ``m/3`` probes. The deflated part has Frobenius norm at most that of the tail of the
  spectrum, so for decaying spectra the error falls as ``1/m`` instead of ``m^(-1/2)``.

* **XTrace** (Epperly, Tropp & Webber 2024, *XTrace: making the most of every sample in stochastic
  trace estimation*, SIMAX): with ``m/2`` Rademacher test vectors ``omega_i`` and ``Y = A Omega``,
  average over ``i`` the Hutch++-like estimates that use all *other* vectors for the sketch,
  ``t_i = tr(Q_i^T A Q_i) + omega_i^T (I - Q_i Q_i^T) A (I - Q_i Q_i^T) omega_i`` with
  ``Q_i = orth(A Omega_{-i})``. Every ``Q_i`` lies in the span of ``Q = orth(Y)``, so with the second
  block ``Z = A Q`` all ``t_i`` follow from ``m/2 x m/2`` matrices: ``m`` products in all. Each
  ``t_i`` is unbiased; their spread gives the standard error. Fixed budget only.

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

TRACE_METHODS = ("hutchinson", "hutch++", "xtrace")
MIN_PROBES = 8
# the fewest products each estimator can work with (Hutch++: sketch, projection and one probe)
MIN_MATVECS = {"hutchinson": 2, "hutch++": 3, "xtrace": 4}


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


def xtrace(
    op: Any,
    *,
    matvecs: int = 100,
    seed: int = 0,
    block_size: int = 8,
    quiet: bool = True,
) -> TraceResult:
    """XTrace estimate of ``tr(op)`` (Epperly, Tropp & Webber 2024) with ``matvecs/2`` test vectors.

    Args:
        op: symmetric ``(n, n)`` operator.
        matvecs: total products (half on the test vectors, half on their orthonormal basis).
        seed: seed of the test vectors.
        block_size: vectors per operator application.
        quiet: no progress bar.
    """
    return trace(op, method="xtrace", matvecs=matvecs, seed=seed, block_size=block_size, quiet=quiet)


def xtrace_estimates(op: Any, omega: torch.Tensor, *, block_size: int = 8) -> torch.Tensor:
    """The ``k`` exchangeable estimates ``t_i`` of XTrace for test vectors ``omega`` (``n x k``).

    With ``Y = A Omega = Q R``, ``Z = A Q``, ``H = Q^T Z``, ``W = Q^T Omega`` and ``T = Z^T Omega``:
    ``Q_i = Q C_i`` where ``C_i = orth(R_{-i})``; writing ``w = W e_i``, ``P w = C_i C_i^T w`` and
    ``u = w - P w``, ``t_i = tr(C_i^T H C_i) + u^T R e_i - u^T H P w + (omega_i^T y_i - w^T R e_i)
    - (T e_i - H^T w)^T P w``. Uses ``2k`` products.
    """
    Y = _apply(op, omega, block_size)
    Q, R = torch.linalg.qr(Y)
    Z = _apply(op, Q, block_size)
    H, W, T = Q.T @ Z, Q.T @ omega, Z.T @ omega
    omega_y = (omega * Y).sum(dim=0)
    k = omega.shape[1]
    out = torch.empty(k, dtype=torch.float64)
    for i in range(k):
        C, _ = torch.linalg.qr(torch.cat([R[:, :i], R[:, i + 1 :]], dim=1))
        w, r = W[:, i], R[:, i]
        pw = C @ (C.T @ w)
        u = w - pw
        hpw = H @ pw
        t = torch.trace(C.T @ H @ C) + u @ r - u @ hpw + (omega_y[i] - w @ r) - (T[:, i] - H.T @ w) @ pw
        out[i] = float(t)
    return out


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
    """Stochastic estimate of ``tr(op)`` by ``method`` (``'hutchinson'``, ``'hutch++'`` or ``'xtrace'``).

    See :func:`hutchinson`, :func:`hutchpp` and :func:`xtrace` for the arguments.

    Returns:
        :class:`TraceResult` with the estimate, its standard error, and the products used.
    """
    t0 = time.perf_counter()
    check_choice("method", method, TRACE_METHODS)
    n, dtype, device = operator_info(op)
    if matvecs < MIN_MATVECS[method]:
        raise ConfigError(
            f"matvecs={matvecs!r} is too small for {method} (at least 2; 3 for hutch++, 4 for xtrace)"
        )
    if method == "xtrace" and rtol is not None:
        raise ConfigError(
            "rtol (--trace-rtol) is not available with method='xtrace' (a fixed budget); use 'hutch++'"
        )
    if rtol is not None and not rtol > 0:
        raise ConfigError(f"rtol={rtol!r} must be > 0")
    if block_size < 1:
        raise ConfigError(f"block_size={block_size!r} must be >= 1")
    gen = torch.Generator().manual_seed(int(seed))
    if method == "xtrace":
        k = min(matvecs // 2, n)
        with Progress(2 * k, "trace (xtrace)", quiet=quiet, unit="hvp") as bar:
            ests = xtrace_estimates(
                op, rademacher(n, k, generator=gen, dtype=dtype, device=device), block_size=block_size
            )
            bar.update(2 * k)
        return TraceResult(
            estimate=float(ests.mean()),
            stderr=_stderr(ests),
            matvecs=2 * k,
            method=method,
            samples=k,
            seconds=time.perf_counter() - t0,
        )
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
