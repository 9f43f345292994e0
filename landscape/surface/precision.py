"""Loss surfaces in reduced precision: the forward under ``torch.autocast``, the loss in float32.

With ``precision='bfloat16'`` or ``'float16'`` every forward pass of a surface runs inside
``torch.autocast(device_type, dtype)``, so matrix products and convolutions run in that precision,
while the parameters, the directions and the moved point ``w_0 + a d_1 + b d_2`` stay float32. The
outputs are cast to float32 before the loss, and the per-batch losses and hit counts are summed in
float64 with the weights ``n_b / N`` of :meth:`landscape.objective.core.Objective.evaluate`: rounding
enters through the forward only, not through the accumulation over batches.

How far that is from the float32 surface is measured, not assumed: :func:`check_points` picks the
point nearest the origin (the checkpoint) and the corners of the grid (at most
:data:`CHECK_FRACTION` of it, at least one point), and the surface records their float32 loss next
to the reduced-precision one (:func:`precision_check`).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from landscape.device import dtype_name
from landscape.errors import ConfigError, check_choice
from landscape.objective.core import Objective
from landscape.objective.tokens import is_token_batch, num_terms, token_hits

PRECISIONS = ("float32", "bfloat16", "float16")
#: the autocast dtype of each reduced precision
AUTOCAST_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}
#: at most this fraction of a grid is evaluated again in float32 for the recorded difference
CHECK_FRACTION = 0.05


def is_reduced(precision: str) -> bool:
    """Whether ``precision`` runs the forward under autocast (anything but float32)."""
    return precision != "float32"


def check_precision(precision: str, objective: Objective) -> None:
    """Refuse a precision that is unknown, or that autocast cannot run for this objective.

    Raises:
        ConfigError: an unknown name; a reduced precision with a model that is not float32 (autocast
            lowers float32 operations only, so a float64 surface would silently stay float64); or a
            device whose autocast does not support the dtype.
    """
    check_choice("precision", precision, PRECISIONS)
    if not is_reduced(precision):
        return
    if objective.dtype != torch.float32:
        raise ConfigError(
            f"precision={precision!r} needs a float32 model, not {dtype_name(objective.dtype)}; "
            "load it with dtype=float32, or use precision='float32'"
        )
    device_type = objective.device.type
    ones = torch.ones(2, 2, device=objective.device)
    try:
        # autocast answers an unsupported dtype with a warning and runs in float32: probe the result
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with torch.autocast(device_type, dtype=AUTOCAST_DTYPES[precision]):
                supported = (ones @ ones).dtype == AUTOCAST_DTYPES[precision]
    except RuntimeError:
        supported = False
    if not supported:
        raise ConfigError(
            f"precision={precision!r} is not supported by autocast on device {str(objective.device)!r}; "
            "use precision='float32' or another device"
        )


def autocast(objective: Objective, precision: str) -> contextlib.AbstractContextManager[Any]:
    """``torch.autocast`` on the objective's device in ``precision``; nothing for float32."""
    if not is_reduced(precision):
        return contextlib.nullcontext()
    return torch.autocast(objective.device.type, dtype=AUTOCAST_DTYPES[precision])


def evaluate_in_precision(objective: Objective, precision: str) -> tuple[float, float]:
    """Mean loss and accuracy over the objective's data with the forward in ``precision``.

    The same sums as :meth:`Objective.evaluate` (``sum_b (n_b / N) loss_b`` and the hits, in
    float64, reduced over shards), from float32 outputs.
    """
    sums = torch.zeros(3, dtype=torch.float64, device=objective.device)  # loss, hits, predictions scored
    classified = True
    with torch.no_grad(), objective.model_mode():
        for x, y, w in objective.batches():
            with autocast(objective, precision):
                out = objective.outputs(x)
            out = out.float()  # the loss of float32 outputs: no reduced-precision softmax or sum
            sums[0] += w * objective.loss_fn(out, y).double()
            if out.dim() == 2 and y.dim() == 1 and not y.is_floating_point():
                sums[1] += (out.argmax(dim=1) == y).sum().double()
                sums[2] += len(y)
            elif is_token_batch(out, y):  # token accuracy over the counted tokens, as evaluate() scores it
                sums[1] += token_hits(out, y, objective.causal).double()
                sums[2] += num_terms(y, objective.causal)
            else:
                classified = False
    objective.reduce_([sums])
    loss, hits, scored = sums.tolist()
    return loss, hits / scored if classified and scored > 0 else float("nan")


def check_points(xs: np.ndarray, ys: np.ndarray | None) -> list[int]:
    """Flat indices of the points evaluated again in float32.

    The point nearest the origin first (the checkpoint itself on the usual grids), then the ends
    (1D) or corners (2D), where the loss is largest; at most :data:`CHECK_FRACTION` of the grid and
    at least one point.
    """
    nx = len(xs)
    centre_x = int(np.argmin(np.abs(xs)))
    if ys is None:
        candidates, total = [centre_x, 0, nx - 1], nx
    else:
        ny = len(ys)
        centre = centre_x * ny + int(np.argmin(np.abs(ys)))
        candidates, total = [centre, 0, ny - 1, (nx - 1) * ny, nx * ny - 1], nx * ny
    limit = max(1, int(CHECK_FRACTION * total))
    return list(dict.fromkeys(candidates))[:limit]


def precision_check(
    coords: Sequence[tuple[float, ...]],
    reduced: Sequence[tuple[float, float]],
    reference: Sequence[tuple[float, float]],
) -> dict[str, Any]:
    """The difference between reduced-precision and float32 ``(loss, accuracy)`` at ``coords``.

    Returns:
        ``points`` (coordinates), ``loss`` and ``loss_float32`` (per point), ``max_abs_diff`` and
        ``max_rel_diff`` of the loss (relative to ``|float32 loss|``), ``max_accuracy_diff``
        (absolute, a fraction); the maxima are ``None`` when no point was checked and ``inf`` when a
        reduced-precision loss is not finite (e.g. a float16 overflow).
    """
    loss = np.array([r[0] for r in reduced], dtype=np.float64)
    ref = np.array([r[0] for r in reference], dtype=np.float64)
    acc_diff = np.abs(np.array([r[1] for r in reduced]) - np.array([r[1] for r in reference]))
    abs_diff = np.where(np.isfinite(loss), np.abs(loss - ref), np.inf)
    rel_diff = abs_diff / np.maximum(np.abs(ref), np.finfo(np.float64).tiny)

    def largest(values: np.ndarray) -> float | None:
        return float(np.max(values)) if values.size else None

    return {
        "points": [list(c) for c in coords],
        "loss": loss.tolist(),
        "loss_float32": ref.tolist(),
        "max_abs_diff": largest(abs_diff),
        "max_rel_diff": largest(rel_diff),
        "max_accuracy_diff": largest(acc_diff[np.isfinite(acc_diff)]),
    }


def check_surface_points(
    loss: np.ndarray,
    accuracy: np.ndarray,
    done: np.ndarray,
    points: Sequence[int],
    coordinates: Callable[[int], tuple[float, ...]],
    evaluate_float32: Callable[[tuple[float, ...]], tuple[float, float]],
) -> dict[str, Any]:
    """:func:`precision_check` over the computed ones of ``points`` (flat indices of a surface)."""
    ks = [k for k in points if done.reshape(-1)[k]]
    coords = [coordinates(k) for k in ks]
    reduced = [(float(loss.reshape(-1)[k]), float(accuracy.reshape(-1)[k])) for k in ks]
    return precision_check(coords, reduced, [evaluate_float32(c) for c in coords])
