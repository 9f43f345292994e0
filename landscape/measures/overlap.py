"""Gradient-Hessian overlap (Gur-Ari et al. 2018, "Gradient descent happens in a tiny subspace").

    overlap = ||P_k g||^2 / ||g||^2,   P_k = V_k V_k^T,

with ``g`` the full-sample gradient and ``V_k`` an orthonormal basis of the top-``k`` Hessian
eigenvectors (largest algebraic eigenvalues, from Lanczos, or given). Given vectors are
orthonormalized (QR) first, so ``P_k`` is the orthogonal projector onto their span either way.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from landscape.errors import ConfigError
from landscape.hessian import HessianOperator, lanczos
from landscape.measures.common import MeasureResult, MeasureRun
from landscape.measures.options import MeasureOptions
from landscape.objective.core import Objective

Eigenvectors = torch.Tensor | Sequence[Sequence[torch.Tensor]]


def _as_matrix(eigenvectors: Eigenvectors, objective: Objective) -> torch.Tensor:
    """Eigenvectors as an ``(n, k)`` float64 matrix (from an ``(n, k)`` tensor or lists of tensors)."""
    n = objective.num_params
    if isinstance(eigenvectors, torch.Tensor):
        M = eigenvectors.reshape(n, -1) if eigenvectors.dim() == 1 else eigenvectors
    else:
        cols = [torch.cat([t.reshape(-1) for t in vec]) for vec in eigenvectors]
        if not cols:
            raise ConfigError("eigenvectors is empty; pass at least one vector or None")
        M = torch.stack(cols, dim=1)
    if M.dim() != 2 or M.shape[0] != n:
        raise ConfigError(
            f"eigenvectors of shape {tuple(M.shape)} do not fit the {n} parameters of the objective"
        )
    return M.detach().to(device=objective.device, dtype=torch.float64)


def gradient_overlap(
    objective: Objective,
    options: MeasureOptions | None = None,
    *,
    eigenvectors: Eigenvectors | None = None,
) -> MeasureResult:
    """Fraction of the gradient in the top-``k`` Hessian eigenspace, ``||P_k g||^2 / ||g||^2``.

    Args:
        objective: the loss over a fixed sample.
        options: ``k``, ``lanczos_tol``, ``seed`` (the Lanczos start vector).
        eigenvectors: reuse these (an ``(n, k)`` tensor or one list of parameter-shaped tensors per
            vector, as in ``EigenResult.eigenvectors``) instead of running Lanczos.

    Returns:
        :class:`MeasureResult` ``'overlap'`` in [0, 1] (costs: the gradient pass, and per Lanczos data
        pass one forward and one backward, plus one backward per Hessian-vector product); ``details`` has the fraction of ``||g||^2``
        along each vector and, when Lanczos ran, the eigenvalues and their convergence.

    Raises:
        ConfigError: the gradient is exactly zero (the ratio is undefined) or the vectors do not fit.
    """
    run = MeasureRun.start(objective, options)
    opts = run.options
    details: dict[str, object] = {}
    hvps, passes = 0, 0
    seed: int | None = None
    if eigenvectors is None:
        op = HessianOperator(objective)
        res = lanczos(op, opts.k, which="LA", tol=opts.lanczos_tol, seed=opts.seed)
        assert res.vectors is not None
        V = _as_matrix(res.vectors, objective)
        hvps, passes = res.matvecs, op.passes
        seed = opts.seed
        details["eigenvalues"] = [float(e) for e in res.eigenvalues]
        details["converged"] = list(res.converged)
        source = "lanczos"
    else:
        V = _as_matrix(eigenvectors, objective)
        source = "given"
    _, grads = objective.gradient()
    g = torch.cat([t.reshape(-1) for t in grads]).double()
    g2 = float(g @ g)
    if g2 == 0.0:
        raise ConfigError(
            "the gradient is exactly zero at these weights: the overlap ||P_k g||^2 / ||g||^2 is undefined"
        )
    Q, _ = torch.linalg.qr(V)
    coeffs = Q.T @ g
    details["per_vector"] = [float(c) ** 2 / g2 for c in (V / V.norm(dim=0)).T @ g]
    details["gradient_norm"] = g2**0.5
    return run.result(
        "overlap",
        float(coeffs @ coeffs) / g2,
        None,
        settings={
            "k": V.shape[1],
            "eigenvectors": source,
            "lanczos_tol": opts.lanczos_tol if source == "lanczos" else None,
        },
        seed=seed,
        hvps=hvps,
        passes=(1.0 + passes, 1.0 + passes + hvps),
        details=details,
    )
