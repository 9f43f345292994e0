"""Loss and accuracy along paths between two solutions ``w_A`` and ``w_B``, in place.

Every path is written as ``phi = w_A + sum_k c_k d_k`` with fixed directions ``d_k`` and
position-dependent coefficients, so the grid machinery of :class:`~landscape.surface.grid.PointEvaluator`
sets each point from the saved base (no accumulated rounding) and restores the model bit for bit:

* linear (Frankle et al. 2020): ``d_1 = w_B - w_A``, ``c_1 = alpha``;
* curves through a control point ``theta`` (Garipov et al. 2018): ``d_1 = theta - w_A``,
  ``d_2 = w_B - w_A`` with the coefficients of :func:`landscape.connect.curves.curve_coefficients`.

Batch norm (Jordan et al. 2022, "REPAIR": interpolated running statistics do not describe the
interpolated network): ``recalibrate`` re-estimates the running statistics at every point on the
*training* data (an exact average over its batches), then evaluates on the requested split; ``states``
interpolates the running statistics along the path (means linearly, variances geometrically,
``v(alpha) = v_A^(1 - alpha) v_B^alpha``, as the loss surfaces do); models without batch norm record ``none``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from landscape.connect.result import PathResult
from landscape.objective.core import Objective
from landscape.surface.directions import interpolation_direction
from landscape.surface.grid import PointEvaluator

Tensors = Mapping[str, torch.Tensor]


def difference(a: Tensors, b: Tensors) -> dict[str, torch.Tensor]:
    """``b - a`` for every tensor of ``a``; running variances get ``log b - log a`` (the surfaces' rule).

    The grid evaluator moves variances geometrically, so ``alpha = 1`` lands on ``b`` and every
    interpolated or extrapolated variance stays positive.
    """
    return interpolation_direction(a, b)


def evaluate_path(
    objective: Objective,
    base: Tensors,
    directions: Sequence[Tensors],
    coefficients: Sequence[Sequence[float]],
    positions: Sequence[float],
    *,
    kind: str,
    recalibration: Objective | None = None,
    bn: str = "none",
) -> PathResult:
    """Evaluate ``objective`` at ``base + sum_k c_k d_k`` for each row of ``coefficients``.

    Args:
        objective: the data to evaluate on; its model is moved in place and restored at the end.
        base: ``w_A`` (parameters, plus batch-norm running statistics when they move with the path).
        directions: the fixed directions ``d_k``, named like ``base``.
        coefficients: one ``(c_1, ..., c_K)`` per position.
        positions: the path parameter of each row (``alpha`` or ``t``), recorded in the result.
        kind: the path's name in the result.
        recalibration: an objective over the training data sharing ``objective``'s model; when given,
            batch-norm running statistics are re-estimated on it at every point.
        bn: what the result records about batch norm.

    Returns:
        The path's losses and accuracies; ``passes`` counts evaluation and recalibration passes.
    """
    start = time.perf_counter()
    moved_by = recalibration if recalibration is not None else objective
    evaluator = PointEvaluator(
        moved_by,
        list(directions),
        base=base,
        bn="recalibrate" if recalibration is not None else "fixed",
    )
    losses, accuracies = [], []
    with evaluator:
        for coords in coefficients:
            evaluator.set_point(coords)
            if recalibration is not None:
                evaluator.recalibrate()
            ev = objective.evaluate()
            losses.append(ev.loss)
            accuracies.append(ev.accuracy)
    passes = len(coefficients) * (2 if recalibration is not None else 1)
    return PathResult(
        kind=kind,
        positions=np.asarray(positions, dtype=np.float64),
        loss=np.asarray(losses),
        accuracy=np.asarray(accuracies),
        bn=bn,
        passes=passes,
        seconds=time.perf_counter() - start,
    )


def linear_path(
    objective: Objective,
    w_a: Tensors,
    w_b: Tensors,
    alphas: Sequence[float],
    *,
    kind: str = "linear",
    recalibration: Objective | None = None,
    bn: str = "none",
) -> PathResult:
    """Loss and accuracy at ``(1 - alpha) w_A + alpha w_B`` (Frankle et al. 2020).

    ``alpha = 1`` sets exactly ``w_B`` up to one rounding of ``w_A + (w_B - w_A)``. Tensors in ``w_a``
    that are running statistics move with the weights (``bn='states'``).
    """
    return evaluate_path(
        objective,
        w_a,
        [difference(w_a, w_b)],
        [(float(a),) for a in alphas],
        alphas,
        kind=kind,
        recalibration=recalibration,
        bn=bn,
    )
