"""Thick-restart Lanczos with full reorthogonalization for a few extreme eigenpairs.

After ``m`` steps from a unit vector ``v_1`` the Lanczos relation is
``A V_m = V_m T_m + beta_m v_{m+1} e_m^T`` with ``V_m`` orthonormal (Golub & Van Loan, *Matrix
Computations*, 4th ed., section 10.1). A Ritz pair ``(theta_i, y_i = V_m s_i)`` of ``T_m = S Theta S^T``
has residual ``||A y_i - theta_i y_i|| = |beta_m s_{m,i}|``, so convergence is read off the small
matrix: a pair is accepted when ``|beta_m s_{m,i}| <= tol * max(|theta_i|, eps^(2/3) ||T_m||)`` (the
floor, as in ARPACK, keeps zero eigenvalues from never converging).

Full reorthogonalization (classical Gram-Schmidt applied twice against the whole basis) keeps the basis
orthonormal to working precision, so no spurious copies of converged eigenvalues appear. When the basis
is full and the wanted pairs have not converged, the method restarts thickly (Wu & Simon 2000): keep the
best ``p`` Ritz vectors, whose projected matrix is ``diag(theta_1..p)`` bordered by ``beta_m s_{m,1..p}``,
and continue from ``v_{m+1}``. Restarts continue until all wanted pairs converge or the matvec budget is
spent; each run reports which pairs converged. Lanczos needs ~ln(n)/(2 sqrt(eps)) matvecs where power
iteration needs ~ln(n)/eps (Kuczynski & Wozniakowski 1992).

Works on any object with ``.shape == (n, n)`` and ``@`` on a vector (a dense symmetric tensor, or
:class:`~landscape.hessian.operator.HessianOperator`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from landscape.errors import ConfigError, check_choice
from landscape.hessian.operator import operator_info
from landscape.hessian.results import EigenResult
from landscape.progress import Progress

WHICH = ("LA", "SA", "LM")


def wanted_order(theta: np.ndarray, which: str) -> np.ndarray:
    """Indices of ``theta`` from most to least wanted: ``LA`` descending, ``SA`` ascending, ``LM`` by
    descending magnitude (stable, so ties keep their order)."""
    if which == "LA":
        return np.argsort(-theta, kind="stable")
    if which == "SA":
        return np.argsort(theta, kind="stable")
    return np.argsort(-np.abs(theta), kind="stable")


def default_max_matvecs(k: int) -> int:
    """Default matvec budget of :func:`lanczos`: ``max(300, 60 k)``."""
    return max(300, 60 * k)


@dataclass
class _Ritz:
    """Ritz pairs of the projected matrix ``T`` with coupling ``beta``, and which of them converged."""

    theta: np.ndarray
    S: np.ndarray
    residuals: np.ndarray  # |beta s_{m,i}| of every pair
    order: np.ndarray  # every pair, most wanted first
    want: np.ndarray  # the k most wanted (fewer while the basis is smaller than k)
    converged: np.ndarray  # of the wanted pairs


def _ritz(T: np.ndarray, beta: float, k: int, which: str, tol: float, eps: float) -> _Ritz:
    """Ritz pairs of ``T`` and the residual rule ``|beta s_{m,i}| <= tol max(|theta_i|, floor)``."""
    theta, S = np.linalg.eigh(T)
    residuals = np.abs(beta * S[-1, :])
    order = wanted_order(theta, which)
    want = order[:k]
    floor = eps ** (2.0 / 3.0) * max(float(np.abs(theta).max()), np.finfo(float).tiny)
    converged = residuals[want] <= tol * np.maximum(np.abs(theta[want]), floor)
    return _Ritz(theta, S, residuals, order, want, converged)


def orthogonalize(V: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Project ``w`` (in place) off the orthonormal columns of ``V`` twice (CGS2).

    Classical Gram-Schmidt applied twice keeps ``w`` orthogonal to ``V`` to working precision
    (Giraud et al. 2005, "twice is enough").

    Returns:
        The coefficients ``V^T w`` of the original ``w`` (both passes summed).
    """
    h = V.T @ w
    w -= V @ h
    h2 = V.T @ w
    w -= V @ h2
    return h + h2


def _fresh_direction(V: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A random unit vector orthogonal to the columns of ``V`` (after an invariant subspace)."""
    n = V.shape[0]
    w = torch.randn(n, generator=gen, dtype=torch.float64).to(device=V.device, dtype=V.dtype)
    orthogonalize(V, w)
    return w / torch.linalg.vector_norm(w)


def _set_next(
    V: torch.Tensor, j: int, w: torch.Tensor, beta: float, scale: float, gen: torch.Generator
) -> None:
    """Column ``j`` of ``V``: ``w / beta``, or, when ``beta`` is negligible next to ``scale`` (the basis
    spans an invariant subspace), a fresh random direction orthogonal to the first ``j`` columns."""
    eps = float(torch.finfo(V.dtype).eps)
    if beta > 100 * eps * max(scale, np.finfo(float).tiny):
        V[:, j] = w / beta
    else:
        V[:, j] = _fresh_direction(V[:, :j], gen)


def _expand(
    op: Any,
    V: torch.Tensor,
    H: np.ndarray,
    start: int,
    *,
    k: int,
    which: str,
    tol: float,
    budget: int,
    used: int,
    gen: torch.Generator,
    bar: Progress,
) -> tuple[int, float, torch.Tensor, int]:
    """Lanczos steps from column ``start`` until the basis is full, the wanted pairs converge or the
    budget is spent; fills ``V`` and ``H`` in place. Returns ``(size, beta, w, matvecs used)``."""
    n, m = V.shape
    eps = float(torch.finfo(V.dtype).eps)
    beta = 0.0
    w = torch.zeros(n, dtype=V.dtype, device=V.device)
    j = start
    for j in range(start, m):
        w = (op @ V[:, j]).to(device=V.device, dtype=V.dtype).clone()
        used += 1
        bar.update()
        h = orthogonalize(V[:, : j + 1], w).double().cpu().numpy()
        H[: j + 1, j] = h
        H[j, : j + 1] = h
        beta = float(torch.linalg.vector_norm(w))
        if j + 1 == m or used >= budget:
            break
        # checked every step: the small eigenproblem costs nothing next to a matvec
        if j + 1 >= k and _ritz(H[: j + 1, : j + 1], beta, k, which, tol, eps).converged.all():
            break
        _set_next(V, j + 1, w, beta, float(np.abs(H[: j + 1, : j + 1]).max()), gen)
    return j + 1, beta, w, used


def _thick_restart(
    V: torch.Tensor,
    H: np.ndarray,
    r: _Ritz,
    size: int,
    k: int,
    w: torch.Tensor,
    beta: float,
    gen: torch.Generator,
) -> int:
    """Keep the ``p`` most wanted Ritz vectors (projected matrix ``diag(theta)``) and continue from
    ``v_{m+1}`` (Wu & Simon 2000); returns ``p``, the column to continue from."""
    m = V.shape[1]
    p = min(size - 1, max(k, k + (m - k) // 2))
    keep = r.order[:p]
    V[:, :p] = V[:, :size] @ torch.from_numpy(r.S[:, keep].copy()).to(device=V.device, dtype=V.dtype)
    H[:] = 0.0
    H[np.arange(p), np.arange(p)] = r.theta[keep]
    _set_next(V, p, w, beta, float(np.abs(r.theta).max()), gen)
    return p


def _sizes(n: int, k: int, tol: float, max_matvecs: int | None, ncv: int | None) -> tuple[int, int]:
    """Check the arguments of :func:`lanczos`; returns ``(matvec budget, basis size)``."""
    if not 1 <= k <= n:
        raise ConfigError(f"k={k!r} must be between 1 and the operator size {n}")
    if not tol > 0:
        raise ConfigError(f"tol={tol!r} must be > 0")
    budget = default_max_matvecs(k) if max_matvecs is None else int(max_matvecs)
    if budget < k:
        raise ConfigError(f"max_matvecs={max_matvecs!r} must be at least k={k}")
    m = min(n, ncv if ncv is not None else max(2 * k + 1, k + 20))
    if m < min(n, k + 1):
        raise ConfigError(f"ncv={ncv!r} must be larger than k={k}")
    return budget, m


def lanczos(
    op: Any,
    k: int = 1,
    *,
    which: str = "LA",
    tol: float = 1e-6,
    max_matvecs: int | None = None,
    ncv: int | None = None,
    seed: int = 0,
    v0: torch.Tensor | None = None,
    return_vectors: bool = True,
    quiet: bool = True,
) -> EigenResult:
    """The ``k`` eigenpairs of a symmetric operator wanted by ``which``.

    Args:
        op: symmetric ``(n, n)`` operator (``.shape`` and ``@``).
        k: number of eigenpairs.
        which: ``'LA'`` largest algebraic, ``'SA'`` smallest algebraic (most negative curvature),
            ``'LM'`` largest magnitude (either sign).
        tol: relative Ritz residual tolerance ``|beta_m s_{m,i}| <= tol |theta_i|``. Eigenvalue
            errors are about ``residual^2 / gap``, far below ``tol``.
        max_matvecs: budget of products (default :func:`default_max_matvecs`).
        ncv: basis size before a restart (default ``max(2k + 1, k + 20)``, at most ``n``).
        seed: seed of the random start vector.
        v0: explicit start vector (overrides ``seed``).
        return_vectors: keep the ``(n, k)`` Ritz vectors in ``result.vectors``.
        quiet: no progress bar.

    Returns:
        :class:`EigenResult` with eigenvalues sorted by ``which`` (``LA`` descending, ``SA``
        ascending, ``LM`` by descending magnitude), residuals, converged flags and matvecs.

    Raises:
        ConfigError: bad ``k``, ``which``, ``tol`` or budget.
    """
    t0 = time.perf_counter()
    check_choice("which", which, WHICH)
    n, dtype, device = operator_info(op)
    budget, m = _sizes(n, k, tol, max_matvecs, ncv)
    eps = float(torch.finfo(dtype).eps)
    gen = torch.Generator().manual_seed(int(seed))
    if v0 is None:
        v = torch.randn(n, generator=gen, dtype=torch.float64).to(device=device, dtype=dtype)
    else:
        v = v0.reshape(-1).to(device=device, dtype=dtype).clone()
    V = torch.zeros(n, m, dtype=dtype, device=device)
    H = np.zeros((m, m))
    V[:, 0] = v / torch.linalg.vector_norm(v)
    start, matvecs, restarts = 0, 0, 0
    with Progress(budget, f"lanczos ({which}, k={k})", quiet=quiet, unit="hvp") as bar:
        while True:
            size, beta, w, matvecs = _expand(
                op, V, H, start, k=k, which=which, tol=tol, budget=budget, used=matvecs, gen=gen, bar=bar
            )
            r = _ritz(H[:size, :size], beta, k, which, tol, eps)
            if size == n:  # the basis spans the space: Ritz pairs are exact up to rounding
                r.converged = np.ones_like(r.converged, dtype=bool)
            bar.set_postfix(converged=f"{int(r.converged.sum())}/{k}", restarts=restarts)
            if (r.converged.all() and size >= k) or matvecs >= budget or size == n:
                break
            start = _thick_restart(V, H, r, size, k, w, beta, gen)
            restarts += 1
    vectors = None
    if return_vectors:
        vectors = V[:, :size] @ torch.from_numpy(r.S[:, r.want].copy()).to(device=device, dtype=dtype)
    return EigenResult(
        eigenvalues=r.theta[r.want].copy(),
        residuals=r.residuals[r.want].copy(),
        converged=[bool(c) for c in r.converged],
        matvecs=matvecs,
        which=which,
        tol=float(tol),
        method="lanczos",
        restarts=restarts,
        seconds=time.perf_counter() - t0,
        vectors=vectors,
    )
