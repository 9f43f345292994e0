"""Relative flatness of a linear feature layer (Petzka et al. 2021, "Relative flatness and generalization").

For the weight ``W`` (``out x in``, rows ``w_s``) of one linear layer and ``H`` the Hessian of the
loss with respect to ``W``,

    kappa(W) = sum_{s, s'} <w_s, w_s'> Tr(H_{s, s'}) = sum_j Tr(G H_j),   G = W W^T,

where ``H_{s,s'}`` is the ``in x in`` block of rows ``s, s'`` and ``H_j`` the ``out x out`` block of
column ``j``. With ``G = U diag(lambda) U^T`` (rank ``r``) and ``v_{jk} = sqrt(lambda_k) u_k e_j^T``,

    kappa = sum_{j=1..in} sum_{k=1..r} v_{jk}^T H v_{jk},

so the exact value costs ``in * r`` Hessian-vector products (``r <= min(out, in)``) instead of the
``in * out`` of the dense layer Hessian. The Hutchinson estimate uses probes
``Delta = U diag(sqrt(lambda)) Z`` with Rademacher ``Z`` (``r x in``): ``E[Delta Delta^T]`` over
columns is ``G`` per column, hence ``E[vec(Delta)^T H vec(Delta)] = kappa``; it reports the sample
standard error.
"""

from __future__ import annotations

import torch

from landscape.errors import ConfigError
from landscape.hessian import HessianOperator
from landscape.measures.common import MeasureResult, MeasureRun, mean_and_stderr
from landscape.measures.options import MeasureOptions
from landscape.objective.core import Objective

EXACT_CHUNK = 64  # columns per call of the operator: bounds the memory of the exact path


def layer_index(objective: Objective, layer: str | None) -> int:
    """Index in ``objective.params`` of the 2-D weight named by ``layer`` (module or parameter name)."""
    matrices = [n for n, p in zip(objective.param_names, objective.params) if p.dim() == 2]
    if layer is None:
        raise ConfigError(f"layer=None: relative-flatness needs a linear layer; choose one of {matrices}")
    for name in (layer, f"{layer}.weight"):
        if name in objective.param_names:
            i = objective.param_names.index(name)
            if objective.params[i].dim() == 2:
                return i
    raise ConfigError(f"layer={layer!r} is not a linear layer's weight; choose one of {matrices}")


def _factor(W: torch.Tensor) -> torch.Tensor:
    """``F = U diag(sqrt(lambda))`` with ``F F^T = W W^T`` and rank-many columns (float64)."""
    G = W.double() @ W.double().T
    lam, U = torch.linalg.eigh(G)
    keep = lam > lam.max().clamp(min=0) * G.shape[0] * torch.finfo(torch.float64).eps
    return U[:, keep] * lam[keep].sqrt()


def _quadratic_forms(op: HessianOperator, V: torch.Tensor) -> torch.Tensor:
    """``v^T H v`` for every column of ``V``."""
    return (V * (op @ V).double()).sum(dim=0)


def relative_flatness(objective: Objective, options: MeasureOptions | None = None) -> MeasureResult:
    """Petzka et al.'s relative flatness ``sum_{s,s'} <w_s, w_s'> Tr(H_{s,s'})`` of ``options.layer``.

    Args:
        objective: the loss over a fixed sample.
        options: ``layer``, ``relative_flatness_method`` (``'exact'``, ``'hutchinson'``, ``'auto'``:
            exact when ``in * rank(W) <= relative_flatness_max_exact``), ``hutchinson_probes``, ``seed``.

    Returns:
        :class:`MeasureResult` ``'relative-flatness'``: exact (``stderr`` ``None``) or a Hutchinson
        estimate with its standard error. Costs are counted as one forward and one backward pass per
        pass over the data plus one backward pass per Hessian-vector product.

    Raises:
        ConfigError: ``layer`` is missing or not a 2-D weight.
    """
    run = MeasureRun.start(objective, options)
    opts = run.options
    idx = layer_index(objective, opts.layer)
    W = objective.params[idx].detach()
    out_dim, in_dim = W.shape
    F = _factor(W)
    rank = F.shape[1]
    method = opts.relative_flatness_method
    if method == "auto":
        method = "exact" if in_dim * rank <= opts.relative_flatness_max_exact else "hutchinson"
    op = HessianOperator(objective, param_indices=[idx])
    n = out_dim * in_dim
    stderr: float | None = None
    seed: int | None = None
    if rank == 0:
        value = 0.0
    elif method == "exact":
        value = 0.0
        columns = in_dim * rank
        for c0 in range(0, columns, EXACT_CHUNK):
            # columns c = j * rank + k: the (out x in) matrix whose column j is F[:, k]
            cols = torch.arange(c0, min(c0 + EXACT_CHUNK, columns), device=W.device)
            V = torch.zeros(out_dim, in_dim, len(cols), dtype=torch.float64, device=W.device)
            V[:, cols // rank, torch.arange(len(cols), device=W.device)] = F[:, cols % rank]
            value += float(_quadratic_forms(op, V.reshape(n, len(cols))).sum())
    else:
        seed = opts.seed
        gen = run.generator
        Z = torch.randint(0, 2, (opts.hutchinson_probes, rank, in_dim), generator=gen, dtype=torch.int8)
        Z = (2 * Z - 1).to(device=W.device, dtype=torch.float64)
        V = torch.einsum("ok,pkj->ojp", F, Z).reshape(n, opts.hutchinson_probes)
        value, stderr = mean_and_stderr(_quadratic_forms(op, V).tolist())
    return run.result(
        "relative-flatness",
        value,
        stderr,
        settings={
            "layer": objective.param_names[idx],
            "method": method,
            "hutchinson_probes": opts.hutchinson_probes if method == "hutchinson" else None,
        },
        seed=seed,
        hvps=op.matvecs,
        passes=(float(op.passes), float(op.passes + op.matvecs)),
        details={"rank": rank, "shape": [out_dim, in_dim], "data_passes": op.passes},
    )
