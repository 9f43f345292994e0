"""XTrace (Epperly, Tropp & Webber 2024, *XTrace: making the most of every sample in stochastic
trace estimation*, SIMAX): with ``m/2`` Rademacher test vectors ``omega_i`` and ``Y = A Omega``,
average over ``i`` the Hutch++-like estimates that use all *other* vectors for the sketch,
``t_i = tr(Q_i^T A Q_i) + omega_i^T (I - Q_i Q_i^T) A (I - Q_i Q_i^T) omega_i`` with
``Q_i = orth(A Omega_{-i})``. Every ``Q_i`` lies in the span of ``Q = orth(Y)``, so with the second
block ``Z = A Q`` all ``t_i`` follow from ``m/2 x m/2`` matrices: ``m`` products in all. Each
``t_i`` is unbiased; their spread gives the standard error. Fixed budget only.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from landscape.hessian.operator import operator_info, rademacher
from landscape.hessian.results import TraceResult
from landscape.hessian.trace_common import apply_blocks, check_trace_arguments, stderr_of
from landscape.progress import Progress


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

    Returns:
        :class:`TraceResult`: the mean of the exchangeable estimates and their standard error.
    """
    t0 = time.perf_counter()
    n, dtype, device = operator_info(op)
    check_trace_arguments("xtrace", matvecs, None, block_size)
    gen = torch.Generator().manual_seed(int(seed))
    k = min(matvecs // 2, n)
    with Progress(2 * k, "trace (xtrace)", quiet=quiet, unit="hvp") as bar:
        ests = xtrace_estimates(
            op, rademacher(n, k, generator=gen, dtype=dtype, device=device), block_size=block_size
        )
        bar.update(2 * k)
    return TraceResult(
        estimate=float(ests.mean()),
        stderr=stderr_of(ests),
        matvecs=2 * k,
        method="xtrace",
        samples=k,
        seconds=time.perf_counter() - t0,
    )


def xtrace_estimates(op: Any, omega: torch.Tensor, *, block_size: int = 8) -> torch.Tensor:
    """The ``k`` exchangeable estimates ``t_i`` of XTrace for test vectors ``omega`` (``n x k``).

    With ``Y = A Omega = Q R``, ``Z = A Q``, ``H = Q^T Z``, ``W = Q^T Omega`` and ``T = Z^T Omega``:
    ``Q_i = Q C_i`` where ``C_i = orth(R_{-i})``; writing ``w = W e_i``, ``P w = C_i C_i^T w`` and
    ``u = w - P w``, ``t_i = tr(C_i^T H C_i) + u^T R e_i - u^T H P w + (omega_i^T y_i - w^T R e_i)
    - (T e_i - H^T w)^T P w``. Uses ``2k`` products.
    """
    Y = apply_blocks(op, omega, block_size)
    Q, R = torch.linalg.qr(Y)
    Z = apply_blocks(op, Q, block_size)
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
