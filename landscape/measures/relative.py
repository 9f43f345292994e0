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

from dataclasses import dataclass

import torch
from torch import nn

from landscape.errors import ConfigError
from landscape.hessian import HessianOperator
from landscape.measures.common import MeasureResult, MeasureRun, mean_and_stderr
from landscape.measures.options import MeasureOptions
from landscape.objective.core import Objective

EXACT_CHUNK = 64  # columns per call of the operator: bounds the memory of the exact path


@dataclass(frozen=True)
class FeatureLayer:
    """The weight of a linear feature layer among the objective's parameters.

    ``transposed`` for Hugging Face's ``Conv1D``, which stores its weight ``(in, out)``; ``tied_to`` the
    parameter name under which a tied weight is differentiated (GPT-2's ``lm_head`` shares the token
    embedding's weight), else ``None``.
    """

    module: str
    index: int
    transposed: bool
    tied_to: str | None


def _is_conv1d(module: nn.Module) -> bool:
    """Hugging Face's ``Conv1D`` (GPT-2), a linear layer whose weight is stored ``(in, out) = (nx, nf)``.

    By class name and ``nf`` (``transformers`` is never imported; :mod:`landscape.surface` has the same
    rule for filters, but importing it here would close an import cycle through the runs package).
    """
    weight = getattr(module, "weight", None)
    return (
        type(module).__name__ == "Conv1D"
        and isinstance(weight, torch.Tensor)
        and weight.dim() == 2
        and weight.shape[1] == getattr(module, "nf", None)
    )


def linear_layers(objective: Objective) -> list[FeatureLayer]:
    """Every ``nn.Linear`` and Hugging Face ``Conv1D`` whose weight the objective differentiates.

    Tied weights are found by identity, so a head tied to an embedding is listed under the head's
    module name; embeddings and other 2-D parameters are not linear feature layers.
    """
    index = {id(p): i for i, p in enumerate(objective.params)}
    layers = []
    for name, module in objective.model.named_modules(remove_duplicate=False):
        weight = getattr(module, "weight", None)
        conv1d = _is_conv1d(module)
        if not (isinstance(module, nn.Linear) or conv1d) or id(weight) not in index:
            continue
        i = index[id(weight)]
        own = f"{name}.weight"
        tied = objective.param_names[i] if objective.param_names[i] != own else None
        layers.append(FeatureLayer(name, i, conv1d, tied))
    return layers


def feature_layer(objective: Objective, layer: str | None) -> FeatureLayer:
    """The linear layer named ``layer``: a module name, or its ``.weight`` parameter name.

    Raises:
        ConfigError: ``layer`` is ``None`` or names no ``nn.Linear``/``Conv1D`` weight.
    """
    layers = linear_layers(objective)
    weights = [f"{fl.module}.weight" for fl in layers]
    if layer is None:
        raise ConfigError(f"layer=None: relative-flatness needs a linear layer; choose one of {weights}")
    for fl in layers:
        if layer in (fl.module, f"{fl.module}.weight"):
            return fl
    raise ConfigError(
        f"layer={layer!r} is not a linear layer's weight; choose one of {weights} (or their module names)"
    )


def layer_index(objective: Objective, layer: str | None) -> int:
    """Index in ``objective.params`` of the linear layer's weight named by ``layer`` (:func:`feature_layer`)."""
    return feature_layer(objective, layer).index


def _factor(W: torch.Tensor) -> torch.Tensor:
    """``F = U diag(sqrt(lambda))`` with ``F F^T = W W^T`` and rank-many columns (float64)."""
    G = W.double() @ W.double().T
    lam, U = torch.linalg.eigh(G)
    keep = lam > lam.max().clamp(min=0) * G.shape[0] * torch.finfo(torch.float64).eps
    return U[:, keep] * lam[keep].sqrt()


def _stored(V: torch.Tensor, layer: FeatureLayer) -> torch.Tensor:
    """Directions ``(out, in, k)`` in the layout of the stored weight (``(in, out, k)`` for ``Conv1D``)."""
    return V.transpose(0, 1).contiguous() if layer.transposed else V


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
        ConfigError: ``layer`` is missing or names no ``nn.Linear``/``Conv1D`` weight.
    """
    run = MeasureRun.start(objective, options)
    opts = run.options
    layer = feature_layer(objective, opts.layer)
    idx = layer.index
    W = objective.params[idx].detach()
    if layer.transposed:  # Conv1D stores (in, out): its rows w_s are the columns
        W = W.T
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
            value += float(_quadratic_forms(op, _stored(V, layer).reshape(n, len(cols))).sum())
    else:
        seed = opts.seed
        gen = run.generator
        Z = torch.randint(0, 2, (opts.hutchinson_probes, rank, in_dim), generator=gen, dtype=torch.int8)
        Z = (2 * Z - 1).to(device=W.device, dtype=torch.float64)
        V = _stored(torch.einsum("ok,pkj->ojp", F, Z), layer).reshape(n, opts.hutchinson_probes)
        value, stderr = mean_and_stderr(_quadratic_forms(op, V).tolist())
    return run.result(
        "relative-flatness",
        value,
        stderr,
        settings={
            "layer": objective.param_names[idx] if layer.tied_to is None else f"{layer.module}.weight",
            "tied_to": layer.tied_to,
            "method": method,
            "hutchinson_probes": opts.hutchinson_probes if method == "hutchinson" else None,
        },
        seed=seed,
        hvps=op.matvecs,
        passes=(float(op.passes), float(op.passes + op.matvecs)),
        details={"rank": rank, "shape": [out_dim, in_dim], "data_passes": op.passes},
    )
