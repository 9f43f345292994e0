"""Directions in parameter space for loss surfaces.

A :class:`Direction` is an ordered mapping ``name -> tensor`` shaped like the objective's parameters
(and, in ``states`` mode, its batch-norm running buffers too). Kinds:

* **random** (Li et al. 2018, "Visualizing the Loss Landscape of Neural Nets"): a Gaussian ``d``
  normalized against the weights ``w``:

  - ``filter``: for each output filter ``i`` of a weight (an output unit, decided by the module
    that owns the tensor: rows of ``nn.Linear`` and ``nn.Embedding``, output channels of
    convolutions, columns of Hugging Face's ``Conv1D``...; the table is in
    :mod:`landscape.surface.filters`), ``d_i <- d_i * ||w_i|| / ||d_i||``;
  - ``layer``: the same per tensor; ``model``: the same over all the (kept) tensors at once;
  - ``none``: the raw Gaussian.

  Bias and norm parameters (biases, norm-layer weights and biases whatever their shape, other 1-D
  tensors, running statistics) are zeroed with ``ignore='biasbn'`` (default) or, with
  ``ignore='none'``, copied from the weights (``d = w``) in the first direction and treated as a
  single filter otherwise (see :func:`random_directions`). Tied parameters (one tensor shared by
  several modules, e.g. GPT-2's token embedding and output head) are one entry of the direction,
  under their ``named_parameters()`` name, so they are perturbed once.

* **interpolation**: ``d = w_2 - w_1`` for every tensor (no normalization), so ``alpha = 1`` is the
  second checkpoint; ``plane``: ``d_1 = w_B - w_A``, ``d_2 = w_C - w_A``.
* **pca** of a trajectory and **eigen** (top Hessian eigenvectors): see
  :mod:`landscape.surface.trajectory` and :func:`eigen_directions`.

**Batch-norm running variances move in log space** (``states`` mode). Their entry in a direction is
a log-ratio ``d``, and the point ``c`` has ``v(c) = v_0 * exp(sum_k c_k d_k)``; interpolation uses
``d = log v_2 - log v_1``, i.e. the geometric path ``v_1^(1 - alpha) v_2^alpha``. Linear
extrapolation of a variance goes negative (1.0 -> -0.459 at ``alpha = 1.5`` from 1.0 to 0.027), so
``sqrt(var + eps)`` is NaN; interpolating standard deviations instead stays non-negative but passes
through zero (the layer divides by ``sqrt(eps)``). The geometric path is positive for every alpha,
is the straight line of the scale ``log sqrt(v)`` the layer divides by, and gives each endpoint's
variance at ``alpha = 0`` exactly and at ``alpha = 1`` to rounding (the log-ratio is kept in float64).
Running means stay linear (any real value is valid). ``num_batches_tracked`` does not move: it is a
step counter, read only in training mode with ``momentum=None``, never by an evaluation. For random
directions the reference scale of a log-space entry is 1 (a relative change): with
``ignore='none'`` the first direction multiplies each variance by ``e^alpha``.

Orthogonality of the 2D random pair (what is exact): the second direction is Gram-Schmidted
against the first *per normalization group* (per filter for ``filter``, per tensor for ``layer``,
globally for ``model`` and ``none``), then re-scaled per group. Re-scaling a group does not change
its orthogonality, so both properties hold at once, up to rounding: every filter of both directions
has the norm of the weights' filter, and ``<d_1, d_2> = 0`` in every group and hence globally.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from landscape.errors import ConfigError, check_choice
from landscape.io.digest import tensors_digest
from landscape.objective.core import Objective
from landscape.seeding import offset_seed
from landscape.surface.filters import FilterSpec, filter_rows, from_filter_rows, shape_spec, specs_for

NORMS = ("filter", "layer", "model", "none")
IGNORES = ("biasbn", "none")
MODES = ("weights", "states")
BN_BUFFERS = ("running_mean", "running_var")
VARIANCE_BUFFER = "running_var"

Direction = dict[str, torch.Tensor]


# -- what moves ---------------------------------------------------------------------------------
def bn_buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    """Floating running statistics of the batch-norm layers, by state-dict name."""
    out: dict[str, torch.Tensor] = {}
    for mname, m in model.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            for b in BN_BUFFERS:
                t = getattr(m, b, None)
                if isinstance(t, torch.Tensor) and t.is_floating_point():
                    out[f"{mname}.{b}" if mname else b] = t
    return out


def is_variance(name: str) -> bool:
    """Whether a state-dict name is a batch-norm running variance (moved in log space)."""
    return name == VARIANCE_BUFFER or name.endswith("." + VARIANCE_BUFFER)


def log_space_dtype(device: torch.device) -> torch.dtype:
    """float64 for log-space entries (so ``alpha = 1`` rounds to the endpoint), float32 on MPS."""
    return torch.float32 if device.type == "mps" else torch.float64


def target_tensors(objective: Objective, mode: str = "weights") -> dict[str, torch.Tensor]:
    """The live tensors a direction moves: the parameters, plus batch-norm buffers in ``states`` mode.

    Args:
        objective: the objective whose model is moved.
        mode: ``weights`` or ``states``.

    Returns:
        Ordered ``name -> tensor`` (the model's own storage, modified in place by the grid).
    """
    check_choice("mode", mode, MODES)
    tensors = dict(zip(objective.param_names, objective.params))
    if mode == "states":
        tensors.update(bn_buffers(objective.model))
    return tensors


def snapshot(objective: Objective, mode: str = "weights") -> Direction:
    """Detached clones of the moved tensors (the base point)."""
    return {k: v.detach().clone() for k, v in target_tensors(objective, mode).items()}


# -- normalization ------------------------------------------------------------------------------
def _group_spec(norm: str, spec: FilterSpec) -> FilterSpec | None:
    """The filters of a tensor under ``norm``: its own for ``filter``, else ``None`` (one group)."""
    return spec if norm == "filter" and spec.has_filters else None


def _groups(t: torch.Tensor, spec: FilterSpec | None) -> torch.Tensor:
    """A 2-D matrix ``(groups, elements)`` of a tensor: its filters, or one row (``spec=None``)."""
    return t.reshape(1, -1) if spec is None else filter_rows(t, spec)


def _ungroup(rows: torch.Tensor, spec: FilterSpec | None, shape: torch.Size) -> torch.Tensor:
    """The inverse of :func:`_groups`."""
    return rows.reshape(shape) if spec is None else from_filter_rows(rows, spec, shape)


def _rescale_(d: torch.Tensor, w: torch.Tensor, spec: FilterSpec | None) -> None:
    """``d_g <- d_g * ||w_g|| / ||d_g||`` per group (filter or tensor), in place."""
    dg, wg = _groups(d, spec), _groups(w, spec)
    dn = dg.norm(dim=1, keepdim=True)
    wn = wg.norm(dim=1, keepdim=True)
    scale = torch.where(dn > 0, wn / torch.where(dn > 0, dn, torch.ones_like(dn)), torch.zeros_like(dn))
    d.copy_(_ungroup(dg * scale, spec, d.shape))


def normalize_direction(
    direction: Mapping[str, torch.Tensor],
    weights: Mapping[str, torch.Tensor],
    *,
    norm: str = "filter",
    ignore: str = "biasbn",
    filters: Mapping[str, FilterSpec] | None = None,
) -> Direction:
    """Normalize a (Gaussian) direction against the weights, as in Li et al. (2018).

    Args:
        direction: tensors shaped like ``weights`` (not modified).
        weights: the base point.
        norm: ``filter`` (per output filter), ``layer`` (per tensor), ``model`` (whole vector) or
            ``none``.
        ignore: ``biasbn`` zeroes bias and norm parameters; ``none`` copies them from the weights.
        filters: each tensor's filters (:func:`landscape.surface.filters.filter_specs` of the
            model); a tensor missing here splits by shape (dim 0 when ``dim > 1``, else a bias),
            which is right for ``nn.Linear`` and ``nn.Conv*d`` only.

    Returns:
        A new direction.
    """
    check_choice("norm", norm, NORMS)
    check_choice("ignore", ignore, IGNORES)
    specs = dict(filters or {})
    out: Direction = {}
    for name, w in weights.items():
        d = direction[name].detach().clone()
        if d.shape != w.shape:
            raise ConfigError(
                f"direction tensor {name!r} has shape {tuple(d.shape)}, weights {tuple(w.shape)}"
            )
        spec = specs.setdefault(name, shape_spec(w))
        if not spec.has_filters:
            if ignore == "biasbn":
                d.zero_()
            else:
                d.copy_(w)
        elif norm in ("filter", "layer"):
            _rescale_(d, w, _group_spec(norm, spec))
        out[name] = d
    if norm == "model":
        kept = [n for n in weights if specs[n].has_filters]
        dn = torch.sqrt(
            sum((out[n].double().pow(2).sum() for n in kept), torch.zeros((), dtype=torch.float64))
        )
        wn = torch.sqrt(
            sum((weights[n].double().pow(2).sum() for n in kept), torch.zeros((), dtype=torch.float64))
        )
        s = float(wn / dn) if float(dn) > 0 else 0.0
        for n in kept:
            out[n].mul_(s)
    return out


def _gaussian_like(weights: Mapping[str, torch.Tensor], generator: torch.Generator) -> Direction:
    """Standard normal draws shaped like ``weights``, drawn on the CPU in float64 then cast.

    Drawing on the CPU in a fixed order makes a seed give the same direction on every device.
    """
    return {
        n: torch.randn(w.shape, generator=generator, dtype=torch.float64).to(device=w.device, dtype=w.dtype)
        for n, w in weights.items()
    }


def _orthogonalize_(
    d2: Direction,
    d1: Direction,
    weights: Mapping[str, torch.Tensor],
    norm: str,
    specs: Mapping[str, FilterSpec],
) -> None:
    """Gram-Schmidt ``d2`` against ``d1`` per group, then re-scale per group (see module docstring)."""
    if norm in ("model", "none"):
        names = list(d1)
        dot = sum(float((d1[n].double() * d2[n].double()).sum()) for n in names)
        nn1 = sum(float(d1[n].double().pow(2).sum()) for n in names)
        if nn1 > 0:
            for n in names:
                d2[n] = (d2[n].double() - (dot / nn1) * d1[n].double()).to(d2[n].dtype)
        if norm == "model":  # one scalar for the whole of d2 keeps the orthogonality
            kept = [n for n in names if specs[n].has_filters]
            dn = sum(float(d2[n].double().pow(2).sum()) for n in kept) ** 0.5
            wn = sum(float(weights[n].double().pow(2).sum()) for n in kept) ** 0.5
            s = wn / dn if dn > 0 else 0.0
            for n in names:
                d2[n] = d2[n] * s
        return
    for n, w in weights.items():
        a, b = d1[n].double(), d2[n].double()
        if not specs[n].has_filters and not bool(a.any()) and not bool(b.any()):
            continue  # zeroed bias or norm parameter: already orthogonal
        group = _group_spec(norm, specs[n])
        ag, bg = _groups(a, group), _groups(b, group)
        dot = (ag * bg).sum(dim=1, keepdim=True)
        aa = (ag * ag).sum(dim=1, keepdim=True)
        coef = torch.where(aa > 0, dot / torch.where(aa > 0, aa, torch.ones_like(aa)), torch.zeros_like(aa))
        b = _ungroup(bg - coef * ag, group, w.shape)
        _rescale_(b, w.double(), group)
        d2[n] = b.to(w.dtype)


def random_directions(
    objective: Objective,
    num: int = 1,
    *,
    seed: int = 0,
    norm: str = "filter",
    ignore: str = "biasbn",
    mode: str = "weights",
    orthogonal: bool = True,
) -> list[Direction]:
    """One or two normalized Gaussian directions at the objective's current point.

    Args:
        objective: supplies the weights (and batch-norm buffers in ``states`` mode).
        num: 1 or 2 directions.
        seed: seed of the CPU generator every draw comes from (recorded by the caller).
        norm: ``filter``, ``layer``, ``model`` or ``none``.
        ignore: ``biasbn`` (zero bias and norm parameters) or ``none`` (keep them, as copies of the
            weights).
        mode: ``weights`` (parameters only) or ``states`` (also batch-norm running statistics).
        orthogonal: make the second direction orthogonal to the first (exactly per normalization
            group; see the module docstring).

    Returns:
        A list of ``num`` directions.
    """
    check_choice("norm", norm, NORMS)
    check_choice("ignore", ignore, IGNORES)
    check_choice("num", num, (1, 2))
    # A log-space entry's reference scale is 1 (a relative change), not the variance itself.
    weights = {n: torch.ones_like(w) if is_variance(n) else w for n, w in snapshot(objective, mode).items()}
    specs = specs_for(weights, weights, objective.model)
    g = torch.Generator().manual_seed(int(seed))
    dirs = [
        normalize_direction(_gaussian_like(weights, g), weights, norm=norm, ignore=ignore, filters=specs)
        for _ in range(num)
    ]
    if num == 2 and ignore == "none":
        # bias and norm parameters of the second direction: a Gaussian (rescaled below) instead of a
        # second copy of the weights, which could not be orthogonal to the first.
        g2 = torch.Generator().manual_seed(offset_seed(seed))
        for n, w in weights.items():
            if not specs[n].has_filters:
                r = torch.randn(w.shape, generator=g2, dtype=torch.float64).to(device=w.device, dtype=w.dtype)
                dirs[1][n] = r
    if num == 2 and orthogonal:
        _orthogonalize_(dirs[1], dirs[0], weights, norm, specs)
    return dirs


def interpolation_direction(base: Mapping[str, torch.Tensor], other: Mapping[str, torch.Tensor]) -> Direction:
    """``other - base`` for every tensor of ``base``, so ``alpha = 1`` lands on ``other``.

    Batch-norm running variances get the log-ratio ``log v_other - log v_base`` instead (float64;
    see the module docstring): ``v(alpha) = v_base^(1 - alpha) v_other^alpha`` stays positive for
    every ``alpha``, where the straight line goes negative past the endpoints.

    Raises:
        ConfigError: ``other`` lacks a tensor or has another shape, or a variance is zero in one
            checkpoint only, negative or not finite (no geometric path exists).
    """
    out: Direction = {}
    for n, w in base.items():
        if n not in other:
            raise ConfigError(
                f"the second checkpoint has no tensor {n!r}; both must be the same architecture"
            )
        o = other[n]
        if o.shape != w.shape:
            raise ConfigError(
                f"tensor {n!r} has shape {tuple(o.shape)} in the second checkpoint, {tuple(w.shape)} in the first"
            )
        if is_variance(n):
            out[n] = _log_ratio(n, w, o.detach().to(w.device))
        else:
            out[n] = o.detach().to(device=w.device, dtype=w.dtype) - w
    return out


def _log_ratio(name: str, v_base: torch.Tensor, v_other: torch.Tensor) -> torch.Tensor:
    """``log v_other - log v_base`` per entry (0 where both are 0), in float64."""
    a = v_base.to(log_space_dtype(v_base.device))
    b = v_other.to(a.dtype)
    both_zero = (a == 0) & (b == 0)
    bad = ~both_zero & ~((a > 0) & (b > 0) & torch.isfinite(a) & torch.isfinite(b))
    if bool(bad.any()):
        raise ConfigError(
            f"running variance {name!r} has {int(bad.sum())} entries that are zero in one checkpoint "
            "only, negative or not finite; variances are interpolated geometrically, which needs "
            "both positive; use mode='weights' to keep the first checkpoint's statistics"
        )
    ones = torch.ones_like(a)
    return torch.where(
        both_zero,
        torch.zeros_like(a),
        torch.log(torch.where(both_zero, ones, b)) - torch.log(torch.where(both_zero, ones, a)),
    )


def eigen_directions(
    objective: Objective, num: int = 2, *, seed: int = 0, tol: float = 1e-6
) -> tuple[list[Direction], np.ndarray]:
    """The top ``num`` Hessian eigenvectors (largest algebraic) as unit-norm directions.

    Uses :func:`landscape.hessian.top_eigenpairs` (imported lazily).

    Returns:
        The directions (parameters only) and their eigenvalues.
    """
    from landscape.hessian import top_eigenpairs  # lazy: another module, heavier import

    res = top_eigenpairs(objective, num, which="LA", tol=tol, seed=seed)
    dirs: list[Direction] = []
    for vec in res.eigenvectors[:num]:
        dirs.append(
            {
                n: v.detach().to(device=p.device, dtype=p.dtype).reshape(p.shape).clone()
                for n, p, v in zip(objective.param_names, objective.params, vec)
            }
        )
    return dirs, np.asarray(res.eigenvalues, dtype=np.float64)[:num]


# -- summaries ----------------------------------------------------------------------------------
def direction_norm(d: Mapping[str, torch.Tensor]) -> float:
    """Euclidean norm of the whole direction."""
    return float(
        sum((t.double().pow(2).sum() for t in d.values()), torch.zeros((), dtype=torch.float64)).sqrt()
    )


def direction_dot(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> float:
    """Inner product of two directions over their common tensors."""
    return float(sum((a[n].double() * b[n].double()).sum() for n in a if n in b))


def describe_directions(dirs: list[Direction], base: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Norms, cosine and digest recorded in the surface metadata."""
    info: dict[str, Any] = {
        "norms": [direction_norm(d) for d in dirs],
        "base_norm": direction_norm(base),
        "tensor_names": list(base),
        "digest": tensors_digest((f"{i}:{n}", t) for i, d in enumerate(dirs) for n, t in d.items()),
    }
    if len(dirs) == 2:
        n0, n1 = info["norms"]
        info["cosine"] = direction_dot(dirs[0], dirs[1]) / (n0 * n1) if n0 > 0 and n1 > 0 else 0.0
    return info
