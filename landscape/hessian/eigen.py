"""Eigenpairs of an objective's Hessian: the entry point other modules call."""

from __future__ import annotations

import torch

from landscape.hessian.krylov import lanczos
from landscape.hessian.operator import HessianOperator
from landscape.hessian.results import EigenResult
from landscape.objective.core import Objective


def top_eigenpairs(
    objective: Objective,
    k: int = 1,
    *,
    which: str = "LA",
    tol: float = 1e-6,
    max_matvecs: int | None = None,
    seed: int = 0,
    mode: str = "auto",
    allow_nondeterministic: bool = False,
    cache_graphs: bool = False,
    hvp: str = "exact",
    quiet: bool = True,
) -> EigenResult:
    """The ``k`` extreme eigenpairs of the Hessian of ``objective`` by thick-restart Lanczos.

    Args:
        objective: loss over a fixed dataset (batch norm in eval mode by default, so the Hessian is
            the Hessian of the training loss with running statistics).
        k: number of eigenpairs.
        which: ``'LA'`` (largest, sorted descending), ``'SA'`` (smallest, ascending) or ``'LM'``
            (largest magnitude, negative curvature included; by descending ``|lambda|``).
        tol: relative Ritz residual tolerance ``|beta_m s_{m,i}| <= tol |theta_i|``.
        max_matvecs: Hessian-vector product budget (default ``max(300, 60 k)``).
        seed: seed of the start vector.
        mode: HVP mode ``'auto'|'rev-rev'|'fwd-rev'``.
        allow_nondeterministic: skip the determinism check of loader data.
        cache_graphs: keep every batch's gradient graph between products (see ``HessianOperator``).
        hvp: ``'exact'`` (on the math attention kernel) or ``'finite-difference'`` (central differences
            of gradients; see ``HessianOperator``).
        quiet: no progress bar.

    Returns:
        :class:`EigenResult`; ``.eigenvalues`` (numpy) and ``.eigenvectors``: one list of tensors
        shaped like ``objective.params`` per eigenpair (unit norm over all parameters).
    """
    op = HessianOperator(
        objective,
        mode=mode,
        allow_nondeterministic=allow_nondeterministic,
        cache_graphs=cache_graphs,
        hvp=hvp,
    )
    res = lanczos(op, k, which=which, tol=tol, max_matvecs=max_matvecs, seed=seed, quiet=quiet)
    assert res.vectors is not None
    res.eigenvectors = eigenvector_tensors(op, res.vectors)
    return res


def eigenvector_tensors(op: HessianOperator, vectors: torch.Tensor) -> list[list[torch.Tensor]]:
    """Columns of ``vectors`` as lists of parameter-shaped tensors."""
    return [[t.detach().clone() for t in op.unflatten(vectors[:, i])] for i in range(vectors.shape[1])]
