"""Block Lanczos (thick-restart block Krylov) with full reorthogonalization for a few extreme eigenpairs.

Single-vector Lanczos (:mod:`landscape.hessian.krylov`) asks for one product at a time. A
:class:`~landscape.hessian.operator.HessianOperator` pushes a block of ``b`` vectors through one pass
over the data (the primal forward and backward are shared), so a method that asks for its products in
blocks passes over the data fewer times. After ``j`` blocks from an ``(n, b)`` start ``X`` the basis
``V`` spans the block Krylov space ``span{X, A X, ..., A^(j-1) X}`` (Golub & Underwood 1977; Golub & Van
Loan, *Matrix Computations*, 4th ed., section 10.3.6), which holds a whole cluster of up to ``b``
nearby eigenvalues at once, where a single vector resolves a cluster only one direction per step.

Design (simple and robust rather than minimal in flops): the basis ``V`` and its image ``AV = op @ V``
are both kept, so no product is ever repeated. After each block:

* Rayleigh-Ritz: ``T = V^T (AV)`` (symmetrized), ``T = S Theta S^T``, Ritz pairs ``(theta_i, y_i = V s_i)``
  with images ``A y_i = (AV) s_i``;
* explicit residuals ``||(AV) s_i - theta_i V s_i||`` and the rule of :func:`~landscape.hessian.krylov.lanczos`:
  a pair is accepted when its residual is ``<= tol * max(|theta_i|, eps^(2/3) ||T||)``, or at the
  products' own rounding level ``<= 10 eps ||T||`` (``eps`` of the operator's dtype), below which an
  explicit residual cannot go (Lanczos' implicit residual ``|beta s_m|`` never sees that error);
* the basis, its images and the Ritz vectors are kept in float64 whatever the operator's dtype, so
  the only rounding left in the residuals is that of the products;
* the next block is the residuals of the most wanted unconverged Ritz pairs, orthogonalized twice
  against ``V`` (CGS2). For a Krylov basis every Ritz residual lies in the same ``b``-dimensional
  space ``A V_last`` minus its projection, so this is block Lanczos; after a restart it continues the
  thick-restarted space. Dependent columns (an invariant subspace, converged pairs) are replaced by
  random directions from the seeded generator, so the basis always grows to the full space when ``n``
  is small, where the Ritz pairs are exact;
* thick restart (Wu & Simon 2000, block form): when the next block does not fit, keep the ``p`` most
  wanted Ritz vectors and their images ``AY = (AV) S_p`` (no product) and continue from their residuals.

A start block ``V0`` (for example the previous eigenvectors while tracking sharpness during training)
is the first block: columns beyond ``block_size`` are pushed with it, fewer are topped up with random
columns. Counts: ``matvecs`` (columns pushed through ``op``) and ``passes`` (``op @`` calls; a
:class:`HessianOperator` splits a block wider than its own ``block_size`` into several data passes).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from landscape.errors import ConfigError, check_choice
from landscape.hessian.krylov import WHICH, default_max_matvecs, orthogonalize, wanted_order
from landscape.hessian.operator import operator_info
from landscape.hessian.results import EigenResult
from landscape.progress import Progress

#: Residuals below ``ROUNDING * eps * ||T||`` (``eps`` of the operator's dtype) are at the rounding level
#: of the products and count as converged: a float32 CNN Hessian's explicit residuals stall at
#: 0.2-5 eps ||T|| (benchmarks/RESULTS.md, "Block Lanczos").
ROUNDING = 10.0


@dataclass
class _BlockRitz:
    """Ritz pairs of the basis: every ``theta`` and ``S``; for the ``q`` most wanted pairs (``order[:q]``)
    their vectors ``Y``, residual vectors ``R`` and norms, and which meet the rule."""

    theta: np.ndarray
    S: np.ndarray
    order: np.ndarray
    Y: torch.Tensor
    R: torch.Tensor
    residuals: np.ndarray
    ok: np.ndarray
    k: int  # the wanted pairs are order[:k] (fewer while the basis is smaller than k)

    @property
    def converged(self) -> np.ndarray:
        return self.ok[: self.k]


class _Basis:
    """Orthonormal columns ``V[:, :size]``, their images ``AV`` and the projected matrix ``V^T AV``."""

    def __init__(self, n: int, m: int, dtype: torch.dtype, device: torch.device) -> None:
        self.V = torch.zeros(n, m, dtype=dtype, device=device)
        self.AV = torch.zeros(n, m, dtype=dtype, device=device)
        self.T = np.zeros((m, m))
        self.size = 0

    def orthonormal_block(self, W: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """The columns of ``W`` orthonormalized against the basis and each other (CGS2); a column
        that is (numerically) dependent is replaced by a random direction."""
        n, c = W.shape
        eps = float(torch.finfo(W.dtype).eps)
        out = torch.zeros(n, c, dtype=W.dtype, device=W.device)
        for j in range(c):
            Q = torch.cat([self.V[:, : self.size], out[:, :j]], dim=1)
            w = W[:, j].clone()
            for attempt in range(3):
                before = float(torch.linalg.vector_norm(w))
                orthogonalize(Q, w)
                after = float(torch.linalg.vector_norm(w))
                # a column that lost all but sqrt(eps) of its norm is in the span already (a random
                # replacement passes at once unless the basis fills the space, which the caller avoids)
                if (after > np.sqrt(eps) * before and after > 0) or attempt == 2:
                    break
                w = torch.randn(n, generator=gen, dtype=torch.float64).to(device=W.device, dtype=W.dtype)
            out[:, j] = w / torch.linalg.vector_norm(w)
        return out

    def append(self, W: torch.Tensor, AW: torch.Tensor) -> None:
        s, c = self.size, W.shape[1]
        self.V[:, s : s + c] = W
        self.AV[:, s : s + c] = AW
        cross = (self.V[:, : s + c].T @ AW).double().cpu().numpy()
        self.T[: s + c, s : s + c] = cross
        self.T[s : s + c, : s + c] = cross.T
        block = self.T[s : s + c, s : s + c]
        self.T[s : s + c, s : s + c] = (block + block.T) / 2
        self.size = s + c

    def ritz(self, k: int, q: int, which: str, tol: float, eps: float) -> _BlockRitz:
        """Rayleigh-Ritz on the basis; residuals of the ``q`` most wanted pairs (``q >= k``), judged
        with the operator's machine epsilon ``eps``."""
        s = self.size
        theta, S = np.linalg.eigh(self.T[:s, :s])
        order = wanted_order(theta, which)
        idx = order[: min(q, s)]
        Sq = torch.from_numpy(S[:, idx].copy()).to(device=self.V.device, dtype=self.V.dtype)
        Y = self.V[:, :s] @ Sq
        th = torch.from_numpy(theta[idx].copy()).to(device=self.V.device, dtype=self.V.dtype)
        R = self.AV[:, :s] @ Sq - Y * th
        residuals = torch.linalg.vector_norm(R, dim=0).double().cpu().numpy()
        norm = max(float(np.abs(theta).max()), np.finfo(float).tiny)
        # the rule of lanczos, plus the operator's rounding: an explicit residual cannot fall below
        # the error of the products themselves (~ eps ||A||), which implicit residuals never see
        ok = (residuals <= tol * np.maximum(np.abs(theta[idx]), eps ** (2.0 / 3.0) * norm)) | (
            residuals <= ROUNDING * eps * norm
        )
        return _BlockRitz(theta, S, order, Y, R, residuals, ok, min(k, s))

    def restart(self, r: _BlockRitz, p: int) -> None:
        """Keep the ``p`` most wanted Ritz vectors and their images (``T = diag(theta)``)."""
        keep = r.order[:p]
        Sp = torch.from_numpy(r.S[:, keep].copy()).to(device=self.V.device, dtype=self.V.dtype)
        s = self.size
        self.V[:, :p] = self.V[:, :s] @ Sp
        self.AV[:, :p] = self.AV[:, :s] @ Sp
        self.T[:] = 0.0
        self.T[np.arange(p), np.arange(p)] = r.theta[keep]
        self.size = p


def _next_block(r: _BlockRitz, c: int, gen: torch.Generator) -> torch.Tensor:
    """Residuals of the (up to ``c``) most wanted unconverged Ritz pairs, topped up at random."""
    R = r.R[:, np.flatnonzero(~r.ok)[:c]]
    if R.shape[1] < c:
        extra = torch.randn(R.shape[0], c - R.shape[1], generator=gen, dtype=torch.float64)
        R = torch.cat([R, extra.to(device=R.device, dtype=R.dtype)], dim=1)
    return R


def _block_sizes(
    n: int, k: int, block_size: int | None, tol: float, max_matvecs: int | None, ncv: int | None, first: int
) -> tuple[int, int, int]:
    """Check the arguments of :func:`block_lanczos`; returns ``(block size, budget, basis size)``."""
    if not 1 <= k <= n:
        raise ConfigError(f"k={k!r} must be between 1 and the operator size {n}")
    if not tol > 0:
        raise ConfigError(f"tol={tol!r} must be > 0")
    b = k if block_size is None else block_size
    if int(b) != b or not 1 <= b <= n:
        raise ConfigError(f"block_size={block_size!r} must be an integer between 1 and the operator size {n}")
    b = int(b)
    first = max(first, b)
    budget = default_max_matvecs(k) if max_matvecs is None else int(max_matvecs)
    if budget < max(k, first):
        raise ConfigError(f"max_matvecs={max_matvecs!r} must be at least k={k} and the first block ({first})")
    m = min(n, ncv if ncv is not None else max(2 * k + b, k + 20 + b, first + b))
    if m < min(n, max(k, first) + b):
        raise ConfigError(
            f"ncv={ncv!r} must hold the larger of k={k} and the start block ({first}) plus one block "
            f"of {b}: use ncv >= {max(k, first) + b}"
        )
    return b, budget, m


def _start_columns(V0: torch.Tensor | None, n: int) -> int:
    """Columns of the start block ``V0`` (1 for a vector, 0 without one)."""
    if V0 is None:
        return 0
    if V0.dim() not in (1, 2) or V0.shape[0] != n or V0.numel() == 0:
        raise ConfigError(f"V0 of shape {tuple(V0.shape)} must be (n,) or (n, c) with n={n}")
    return 1 if V0.dim() == 1 else int(V0.shape[1])


def _start_block(V0: torch.Tensor | None, n: int, b: int, gen: torch.Generator) -> torch.Tensor:
    """The first block: ``V0`` (a vector or ``(n, c)``), topped up to ``b`` columns at random."""
    if V0 is None:
        return torch.randn(n, b, generator=gen, dtype=torch.float64)
    X = V0.reshape(n, -1)
    if X.shape[1] < b:
        X = torch.cat([X.double(), torch.randn(n, b - X.shape[1], generator=gen, dtype=torch.float64)], 1)
    return X


def block_lanczos(
    op: Any,
    k: int = 1,
    *,
    block_size: int | None = None,
    which: str = "LA",
    tol: float = 1e-6,
    max_matvecs: int | None = None,
    ncv: int | None = None,
    seed: int = 0,
    V0: torch.Tensor | None = None,
    return_vectors: bool = True,
    quiet: bool = True,
) -> EigenResult:
    """The ``k`` eigenpairs of a symmetric operator wanted by ``which``, with products in blocks.

    Args:
        op: symmetric ``(n, n)`` operator (``.shape`` and ``@`` on an ``(n, b)`` block).
        k: number of eigenpairs.
        block_size: columns per product (default ``k``: the smallest block that holds a ``k``-fold
            cluster, and one data pass per block; ``k = 1`` is single-vector Lanczos in block form).
        which: ``'LA'``, ``'SA'`` or ``'LM'`` (as :func:`~landscape.hessian.krylov.lanczos`).
        tol: relative residual tolerance ``||A y_i - theta_i y_i|| <= tol |theta_i|`` (explicit
            residuals; one at the products' rounding, ``<= ROUNDING eps ||T||``, also converges).
        max_matvecs: budget of products, columns counted (default ``max(300, 60 k)``); the last block
            is narrowed to fit.
        ncv: basis size before a restart (default ``max(2k + b, k + 20 + b)``, at most ``n``).
        seed: seed of the random start block and of replacement directions.
        V0: start block ``(n, c)`` or a vector: topped up at random to ``block_size`` columns.
        return_vectors: keep the ``(n, k)`` Ritz vectors in ``result.vectors``.
        quiet: no progress bar.

    Returns:
        :class:`EigenResult` (``method='block-lanczos'``) with eigenvalues sorted by ``which``,
        residuals, converged flags, matvecs (columns) and passes (``op @`` calls).

    Raises:
        ConfigError: bad ``k``, ``which``, ``tol``, ``block_size``, ``V0``, ``ncv`` or budget.
    """
    t0 = time.perf_counter()
    check_choice("which", which, WHICH)
    n, dtype, device = operator_info(op)
    gen = torch.Generator().manual_seed(int(seed))
    b, budget, m = _block_sizes(n, k, block_size, tol, max_matvecs, ncv, _start_columns(V0, n))
    # basis, images and residuals in float64: with a float32 operator only the products round
    W = _start_block(V0, n, b, gen).to(device=device, dtype=torch.float64)
    basis = _Basis(n, m, torch.float64, device)
    matvecs = passes = restarts = 0
    with Progress(budget, f"block lanczos ({which}, k={k}, b={b})", quiet=quiet, unit="hvp") as bar:
        while True:
            W = basis.orthonormal_block(W[:, : min(W.shape[1], n - basis.size)], gen)
            AW = (op @ W.to(dtype)).to(device=device, dtype=torch.float64).reshape(n, -1)
            matvecs, passes = matvecs + W.shape[1], passes + 1
            bar.update(W.shape[1])
            basis.append(W, AW)
            r = basis.ritz(k, k + b, which, tol, float(torch.finfo(dtype).eps))
            if basis.size == n:  # the basis spans the space: Ritz pairs are exact up to rounding
                r.ok[:] = True
            bar.set_postfix(converged=f"{int(r.converged.sum())}/{k}", restarts=restarts)
            if (r.converged.all() and basis.size >= k) or matvecs >= budget or basis.size == n:
                break
            c = min(b, budget - matvecs, n - basis.size)
            if basis.size + c > m:
                basis.restart(r, min(m - c, k + (m - k) // 2))
                restarts += 1
            W = _next_block(r, c, gen)
    return EigenResult(
        eigenvalues=r.theta[r.order[: r.k]].copy(),
        residuals=r.residuals[: r.k].copy(),
        converged=[bool(c) for c in r.converged],
        matvecs=matvecs,
        which=which,
        tol=float(tol),
        method="block-lanczos",
        restarts=restarts,
        seconds=time.perf_counter() - t0,
        vectors=r.Y[:, : r.k].to(dtype) if return_vectors else None,
        passes=passes,
    )
