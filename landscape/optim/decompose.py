"""Direction-vs-magnitude decomposition of an update, and the statistics that compare two updates.

The empirical SAM study (Luong 2024, https://github.com/lhchau/empirical-sam) asks which part of the SAM
gradient matters, its direction or its magnitude. A gradient vector ``g`` is split in one of two ways:

* ``"global"``: direction ``g / ||g||`` (a unit vector) and magnitude ``||g||`` (one number for the whole
  update);
* ``"elementwise"``: direction ``sign(g_i)`` and magnitude ``|g_i|`` per coordinate.

``combine_direction_magnitude(a, b)`` builds the vector with the direction of ``a`` and the magnitude of
``b``. SAM-direction is ``combine(g_SAM, g_SGD)`` (SAM's direction, SGD's magnitude); SAM-magnitude is
``combine(g_SGD, g_SAM)`` (SGD's direction, SAM's magnitude). The names mean what they say; the public
empirical-SAM code has them swapped relative to its README.

Per-step statistics of two gradients (``magnitude_statistics``):

* ``grad_norm_ratio = ||g_SAM|| / ||g_SGD||``;
* ``cosine = <g_SAM, g_SGD> / (||g_SAM|| ||g_SGD||)``;
* ``frac_larger = #{i : |g_SAM_i| > |g_SGD_i|} / n`` (a fraction in [0, 1], not a count).

Every function accepts a single tensor or a sequence of tensors (one per parameter); the norms and
fractions are always over the concatenation of all of them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from landscape.errors import ConfigError, check_choice

DECOMPOSITIONS: tuple[str, ...] = ("global", "elementwise")
STAT_KEYS: tuple[str, ...] = ("grad_norm_ratio", "cosine", "frac_larger")

TensorOrList = Tensor | Sequence[Tensor]


def _as_list(x: TensorOrList) -> list[Tensor]:
    return [x] if isinstance(x, Tensor) else list(x)


def _check_same_shapes(a: list[Tensor], b: list[Tensor]) -> None:
    if len(a) != len(b) or any(x.shape != y.shape for x, y in zip(a, b)):
        raise ConfigError(
            f"the two gradients must have the same structure; got shapes {[tuple(x.shape) for x in a]} "
            f"and {[tuple(y.shape) for y in b]}"
        )


def global_norm(x: TensorOrList) -> Tensor:
    """Euclidean norm of the concatenation of all tensors, as a 0-d tensor on the first tensor's device.

    Args:
        x: a tensor or a sequence of tensors.

    Returns:
        ``sqrt(sum_k ||x_k||^2)``.
    """
    xs = _as_list(x)
    if not xs:
        raise ConfigError("global_norm needs at least one tensor")
    device = xs[0].device
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t).to(device) for t in xs]))


def magnitude_statistics(g_sam: TensorOrList, g_sgd: TensorOrList) -> dict[str, float]:
    """Compare a SAM gradient with the SGD gradient of the same step.

    Args:
        g_sam: the gradient at the perturbed point, ``grad L(w + e)``.
        g_sgd: the gradient at the current point, ``grad L(w)``; same structure as ``g_sam``.

    Returns:
        ``{"grad_norm_ratio": ||g_SAM|| / ||g_SGD||, "cosine": cos(g_SAM, g_SGD),
        "frac_larger": mean_i 1[|g_SAM_i| > |g_SGD_i|]}``. A ratio or cosine with a zero norm in its
        denominator is ``nan``.
    """
    a, b = _as_list(g_sam), _as_list(g_sgd)
    _check_same_shapes(a, b)
    na = float(global_norm(a))
    nb = float(global_norm(b))
    dot = float(sum(torch.sum(x * y.to(x.device)).item() for x, y in zip(a, b)))
    larger = sum(int((x.abs() > y.to(x.device).abs()).sum().item()) for x, y in zip(a, b))
    n = sum(x.numel() for x in a)
    return {
        "grad_norm_ratio": na / nb if nb > 0 else math.nan,
        "cosine": dot / (na * nb) if na > 0 and nb > 0 else math.nan,
        "frac_larger": larger / n if n > 0 else math.nan,
    }


def combine_direction_magnitude(
    direction_from: TensorOrList, magnitude_from: TensorOrList, *, decomposition: str = "global"
) -> list[Tensor]:
    """The vector with the direction of one update and the magnitude of another.

    ``global``: ``d = a / ||a|| * ||b||`` (all zeros when ``||a|| = 0``).
    ``elementwise``: ``d_i = sign(a_i) * |b_i|`` (zero where ``a_i = 0``).

    Args:
        direction_from: ``a``, the update whose direction is kept.
        magnitude_from: ``b``, the update whose magnitude is kept; same structure as ``a``.
        decomposition: ``"global"`` or ``"elementwise"``.

    Returns:
        A list of new tensors with the structure of ``a``.
    """
    check_choice("decomposition", decomposition, DECOMPOSITIONS)
    a, b = _as_list(direction_from), _as_list(magnitude_from)
    _check_same_shapes(a, b)
    if decomposition == "elementwise":
        return [torch.sign(x) * y.to(x.device).abs() for x, y in zip(a, b)]
    na = global_norm(a)
    nb = global_norm(b).to(na.device)
    if float(na) == 0.0:
        return [torch.zeros_like(x) for x in a]
    scale = nb / na
    return [x * scale.to(x.device) for x in a]


def sam_direction_update(
    g_sam: TensorOrList, g_sgd: TensorOrList, *, decomposition: str = "global"
) -> list[Tensor]:
    """SAM-direction: the direction of ``g_SAM`` with the magnitude of ``g_SGD``."""
    return combine_direction_magnitude(g_sam, g_sgd, decomposition=decomposition)


def sam_magnitude_update(
    g_sam: TensorOrList, g_sgd: TensorOrList, *, decomposition: str = "global"
) -> list[Tensor]:
    """SAM-magnitude: the direction of ``g_SGD`` with the magnitude of ``g_SAM``."""
    return combine_direction_magnitude(g_sgd, g_sam, decomposition=decomposition)


def summarize_statistics(records: Sequence[Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """Mean, standard deviation, min and max of each statistic over a run (``nan`` entries skipped).

    Args:
        records: one ``magnitude_statistics`` dict per step.

    Returns:
        ``{key: {"mean", "std", "min", "max", "count"}}`` for each key of ``STAT_KEYS`` present.
    """
    out: dict[str, dict[str, float]] = {}
    for key in STAT_KEYS:
        vals = [float(r[key]) for r in records if key in r and not math.isnan(float(r[key]))]
        if not vals:
            continue
        t = torch.tensor(vals, dtype=torch.float64)
        out[key] = {
            "mean": float(t.mean()),
            "std": float(t.std(unbiased=False)),
            "min": float(t.min()),
            "max": float(t.max()),
            "count": float(len(vals)),
        }
    return out
