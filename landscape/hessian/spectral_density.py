"""Spectral density by stochastic Lanczos quadrature (SLQ).

For a symmetric ``A`` with eigenpairs ``(lambda_j, u_j)`` the spectral density is
``phi(t) = (1/n) sum_j delta(t - lambda_j)``, and for a random unit vector ``v`` (normalized Rademacher)
``E[v^T f(A) v] = (1/n) tr f(A) = integral f dphi``. ``m`` Lanczos steps from ``v`` give a tridiagonal
``T_m = S Theta S^T`` whose Ritz values ``theta_i`` and weights ``w_i = S_{1i}^2`` form the ``m``-point
Gauss quadrature of the measure ``sum_j (v^T u_j)^2 delta(t - lambda_j)``: exact for polynomials of
degree up to ``2m - 1`` (Golub & Meurant 2010; Lin, Saad & Yang 2016, *Approximating spectral densities
of large matrices*). Averaging over several runs and smoothing each node with a Gaussian of width
``sigma`` gives the density (Ghorbani, Krishnan & Xiao 2019, *An investigation into neural net
optimization via Hessian eigenvalue density*):

    phi_sigma(t) = (1/R) sum_r sum_i w_ri exp(-(t - theta_ri)^2 / (2 sigma^2)) / (sigma sqrt(2 pi)).

The Lanczos runs use full reorthogonalization, so no ghost eigenvalues appear.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch

from landscape.errors import ConfigError
from landscape.hessian.krylov import orthogonalize
from landscape.hessian.operator import operator_info, rademacher
from landscape.hessian.results import DensityResult
from landscape.progress import Progress


def lanczos_quadrature(op: Any, v: torch.Tensor, steps: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Gauss quadrature nodes and weights of ``v``'s spectral measure from ``steps`` Lanczos steps.

    Stops early at an invariant subspace (then the quadrature is exact). Returns
    ``(nodes, weights, matvecs)``; the weights sum to one.
    """
    n, dtype, device = operator_info(op)
    steps = min(steps, n)
    eps = float(torch.finfo(dtype).eps)
    V = torch.zeros(n, steps, dtype=dtype, device=device)
    V[:, 0] = v.to(device=device, dtype=dtype) / torch.linalg.vector_norm(v)
    alpha: list[float] = []
    beta: list[float] = []
    for j in range(steps):
        w = (op @ V[:, j]).to(device=device, dtype=dtype).clone()
        h = orthogonalize(V[:, : j + 1], w)
        alpha.append(float(h[j]))
        b = float(torch.linalg.vector_norm(w))
        scale = max(abs(a) for a in alpha) + max(beta, default=0.0)
        if j + 1 == steps or b <= 100 * eps * max(scale, 1e-300):
            break
        beta.append(b)
        V[:, j + 1] = w / b
    m = len(alpha)
    T = np.diag(alpha) + np.diag(beta[: m - 1], 1) + np.diag(beta[: m - 1], -1)
    theta, S = np.linalg.eigh(T)
    return theta, S[0, :] ** 2, m


def gaussian_density(nodes: np.ndarray, weights: np.ndarray, grid: np.ndarray, sigma: float) -> np.ndarray:
    """``(1/R) sum_r sum_i w_ri N(grid; theta_ri, sigma^2)`` for ``(R, m)`` nodes and weights."""
    d = grid[None, None, :] - nodes[:, :, None]
    k = np.exp(-0.5 * (d / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
    return np.einsum("rm,rmg->g", weights, k) / nodes.shape[0]


def slq(
    op: Any,
    *,
    runs: int = 4,
    steps: int = 40,
    sigma: float | None = None,
    grid: np.ndarray | None = None,
    grid_size: int = 1000,
    seed: int = 0,
    start_vectors: torch.Tensor | None = None,
    quiet: bool = True,
) -> DensityResult:
    """Spectral density of a symmetric operator by stochastic Lanczos quadrature.

    Args:
        op: symmetric ``(n, n)`` operator.
        runs: independent Lanczos runs (Rademacher start vectors).
        steps: Lanczos steps per run (quadrature nodes; exact moments up to degree ``2 steps - 1``).
        sigma: Gaussian smoothing width (default ``1%`` of the spread of the nodes).
        grid: points to evaluate the density at (default ``grid_size`` points spanning the nodes
            plus ``5 sigma`` either side, so the density integrates to 1 on it).
        grid_size: number of default grid points.
        seed: seed of the start vectors.
        start_vectors: explicit ``(n, runs)`` start vectors (overrides ``seed``).
        quiet: no progress bar.

    Returns:
        :class:`DensityResult` with nodes, weights (``(runs, m)``, padded with zero weights when a run
        stopped early), the grid and the density.
    """
    t0 = time.perf_counter()
    n, dtype, device = operator_info(op)
    if runs < 1 or steps < 1:
        raise ConfigError(f"runs={runs!r} and steps={steps!r} must be >= 1")
    if sigma is not None and not sigma > 0:
        raise ConfigError(f"sigma={sigma!r} must be > 0")
    if start_vectors is not None:
        if start_vectors.dim() != 2 or start_vectors.shape[0] != n:
            raise ConfigError(f"start_vectors must have shape ({n}, runs), got {tuple(start_vectors.shape)}")
        runs = start_vectors.shape[1]
    gen = torch.Generator().manual_seed(int(seed))
    m = min(steps, n)
    nodes = np.zeros((runs, m))
    weights = np.zeros((runs, m))
    matvecs = 0
    with Progress(runs * m, "spectral density (SLQ)", quiet=quiet, unit="hvp") as bar:
        for r in range(runs):
            if start_vectors is not None:
                v = start_vectors[:, r]
            else:
                v = rademacher(n, 1, generator=gen, dtype=dtype, device=device)[:, 0]
            theta, w, used = lanczos_quadrature(op, v, m)
            nodes[r, : len(theta)] = theta
            nodes[r, len(theta) :] = theta[-1]
            weights[r, : len(w)] = w
            matvecs += used
            bar.update(used)
    lo, hi = float(nodes.min()), float(nodes.max())
    if sigma is None:
        sigma = 0.01 * (hi - lo) if hi > lo else max(abs(hi), 1.0) * 1e-3
    if grid is None:
        grid = np.linspace(lo - 5 * sigma, hi + 5 * sigma, grid_size)
    grid = np.asarray(grid, dtype=float)
    return DensityResult(
        nodes=nodes,
        weights=weights,
        grid=grid,
        density=gaussian_density(nodes, weights, grid, sigma),
        sigma=float(sigma),
        matvecs=matvecs,
        num_params=n,
        seconds=time.perf_counter() - t0,
    )
