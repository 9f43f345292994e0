"""Several grid points per pass over the data: one vmapped forward of stacked parameter sets.

A sequential surface sets the model to one point, runs a pass over the data, and moves on; on small
models the per-point Python work (setting tensors, launching many tiny kernels) costs more than the
arithmetic. Here the moved tensors of ``P`` points are stacked along a new leading axis,

    W[p] = w_0 + sum_k c[p, k] d_k          (running variances: v_0 exp(sum_k c[p, k] d_k)),

and each batch goes through ``torch.func.vmap`` of ``torch.func.functional_call`` over that axis, so
one pass over the data evaluates all ``P`` points (batch-norm running statistics are vmapped like
the parameters when the directions move them, and shared otherwise). Losses are accumulated per
point exactly as :meth:`landscape.objective.core.Objective.evaluate` does (weight ``n_b / N`` per batch,
float64 sums), so the result equals the one-point path up to the rounding of a batched matrix
product (tests: 1e-6 in float32, 1e-12 in float64).

Batch-norm recalibration needs one training-mode pass per point and stays on the one-point path, and
so do dict inputs (Hugging Face batches) and token outputs: they are scored by
:meth:`~landscape.objective.core.Objective.evaluate` (token mean, token accuracy) one point per pass.

In a reduced precision (:mod:`landscape.surface.precision`) the vmapped forward runs under autocast
and its outputs are cast to float32 before the loss. The batched forward rounds at other places
than the one-point one (a vmapped ``Linear`` is a low-precision product plus a float32 bias, not
one fused low-precision ``addmm``), so the two paths agree to the reduced precision's rounding,
not to float32's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

from landscape.errors import ConfigError
from landscape.surface.directions import log_space_dtype
from landscape.surface.precision import autocast, is_reduced

if TYPE_CHECKING:  # grid.py imports this module
    from landscape.surface.grid import PointEvaluator

#: largest number of points stacked in one pass by ``points_per_pass='auto'``
AUTO_MAX_POINTS = 256
#: default budget of the stacked tensors and activations of one pass (bytes): near a CPU's cache
#: size, since larger passes measured slower per point (8x8 digits, 64-64 MLP: 32 points per pass
#: 3307 points/s, 256 points per pass 2628 points/s)
DEFAULT_MEMORY_BUDGET = 8 * 2**20
#: ``'auto'`` stacks only models whose moved tensors take at most this many bytes per point ...
AUTO_MAX_WEIGHT_BYTES = 64 * 2**10
#: ... and whose activations of one batch take at most this many bytes per point: above either, one
#: point's forward is already bound by arithmetic or memory traffic, and stacking measured slower
#: (benchmarks/RESULTS.md, "Several points per pass")
AUTO_MAX_ACTIVATION_BYTES = 512 * 2**10


def _activation_bytes(evaluator: PointEvaluator) -> int:
    """Bytes of every module output of one forward on the largest batch's first batch (one point)."""
    model = evaluator.objective.model
    total = 0

    def count(_m: nn.Module, _inputs: object, out: object) -> None:
        nonlocal total
        if isinstance(out, torch.Tensor):
            total += out.numel() * out.element_size()

    hooks = [m.register_forward_hook(count) for m in model.modules()]
    try:
        with torch.no_grad(), evaluator.objective.model_mode():
            for x, _, _ in evaluator.objective.batches():
                evaluator.objective.outputs(x)
                break
    finally:
        for h in hooks:
            h.remove()
    return total


def _one_point_inputs(evaluator: PointEvaluator) -> str | None:
    """Why the objective's batches are evaluated one point per pass, or ``None`` if they can be stacked.

    Dict inputs (Hugging Face batches: a model called with keywords, masks beside the tokens) and token
    outputs go through :meth:`Objective.evaluate` point by point, which scores them (token mean, token
    accuracy) exactly as every other command does.
    """
    obj = evaluator.objective
    first = next(iter(obj.batches()), None)
    if first is not None and isinstance(first[0], Mapping):
        return "the inputs are dicts (Hugging Face batches): evaluated one point per pass"
    if obj.token_level:
        return "token outputs (mean over counted tokens, token accuracy): evaluated one point per pass"
    return None


def choose_points_per_pass(
    evaluator: PointEvaluator, requested: int | str, *, memory_budget: int = DEFAULT_MEMORY_BUDGET
) -> tuple[int, str]:
    """The number of points per pass, and why.

    ``requested`` is a positive int (taken as is, except with batch-norm recalibration, batch
    statistics, dict inputs or token outputs: one point) or ``'auto'``: one point for models with
    convolutions or whose moved tensors or one batch's activations per point exceed
    :data:`AUTO_MAX_WEIGHT_BYTES` /
    :data:`AUTO_MAX_ACTIVATION_BYTES` (their sequential forward is already bound by arithmetic,
    and stacking measured slower); otherwise as many points as fit ``memory_budget`` bytes, at
    most :data:`AUTO_MAX_POINTS`.

    Returns:
        ``(points, reason)``; ``reason`` says why it is 1 when it is, else how it was chosen.

    Raises:
        ConfigError: ``requested`` is neither ``'auto'`` nor a positive int.
    """
    if requested != "auto" and (
        isinstance(requested, bool) or not isinstance(requested, int) or requested < 1
    ):
        raise ConfigError(f"points_per_pass={requested!r} is not valid; use 'auto' or a positive integer")
    if evaluator.bn == "recalibrate":
        return 1, "bn='recalibrate' re-estimates batch-norm statistics at each point (one point per pass)"
    if evaluator.objective.bn_mode != "eval":
        return (
            1,
            f"bn_mode={evaluator.objective.bn_mode!r}: batch statistics are evaluated one point per pass",
        )
    unstacked = _one_point_inputs(evaluator)
    if unstacked is not None:
        return 1, unstacked
    if requested != "auto":
        return int(requested), "requested"
    convs = [
        type(m).__name__
        for m in evaluator.objective.model.modules()
        if isinstance(m, nn.modules.conv._ConvNd)
    ]
    if convs:  # per-point kernels become one grouped convolution, measured 2-3x slower per point
        return 1, f"auto: the model has convolutions ({convs[0]}); stacking them is slower on the CPU"
    weight_bytes = sum(t.numel() * t.element_size() for t in evaluator.live.values())
    activation_bytes = _activation_bytes(evaluator)
    sizes = f"{weight_bytes} weight bytes and {activation_bytes} activation bytes per point"
    if weight_bytes > AUTO_MAX_WEIGHT_BYTES or activation_bytes > AUTO_MAX_ACTIVATION_BYTES:
        return 1, f"auto: {sizes} (above {AUTO_MAX_WEIGHT_BYTES} or {AUTO_MAX_ACTIVATION_BYTES}: no gain)"
    points = max(1, min(AUTO_MAX_POINTS, memory_budget // max(weight_bytes + activation_bytes, 1)))
    return int(points), f"auto: {sizes}, budget {memory_budget} bytes"


class BatchedPointEvaluator:
    """Evaluates several points ``base + sum_k c_k d_k`` in one pass, without moving the model.

    Args:
        evaluator: the one-point evaluator whose base, directions and objective are used (its
            model is read, never written).
    """

    def __init__(self, evaluator: PointEvaluator) -> None:
        if evaluator.bn != "fixed":
            raise ConfigError(f"bn={evaluator.bn!r} is evaluated one point at a time; use bn='fixed'")
        self.evaluator = evaluator
        self.objective = evaluator.objective

    def stacked(self, coords: Sequence[Sequence[float]]) -> dict[str, torch.Tensor]:
        """The moved tensors of every point, stacked on a new leading axis (same dtypes as the model)."""
        ev = self.evaluator
        ndim = len(ev.directions)
        if any(len(c) != ndim for c in coords):
            raise ConfigError(f"coordinates for {ndim} direction(s) expected, got {list(coords)[:3]}")
        points = len(coords)
        c64 = torch.tensor([[float(v) for v in p] for p in coords], dtype=torch.float64)
        out: dict[str, torch.Tensor] = {}
        for n, t in ev.live.items():
            base = ev.base[n]
            view = (points,) + (1,) * base.dim()
            if n in ev.log_space:  # as PointEvaluator.set_point: float64 log-ratio, then the buffer's dtype
                dtype = log_space_dtype(t.device)
                log_ratio = torch.zeros((points, *base.shape), dtype=dtype, device=t.device)
                for k, d in enumerate(ev.directions):
                    if n in d:
                        log_ratio += c64[:, k].to(t.device, dtype).view(view) * d[n]
                out[n] = (base.to(dtype) * torch.exp(log_ratio)).to(t.dtype)
                continue
            stack = base.unsqueeze(0).repeat(points, *([1] * base.dim()))
            for k, d in enumerate(ev.directions):
                if n in d:
                    stack.add_(c64[:, k].to(t.device, t.dtype).view(view) * d[n])
            out[n] = stack
        return out

    def evaluate(self, coords: Sequence[Sequence[float]]) -> list[tuple[float, float]]:
        """Loss and accuracy at each point of ``coords`` (one pass over the data for all of them)."""
        obj = self.objective
        model = obj.model
        params = self.stacked(coords)
        points = len(coords)
        per_point_loss = isinstance(obj.loss_fn, nn.modules.loss._Loss)

        def outputs(p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
            return obj.functional_outputs(p, x, module=model)

        forward = torch.func.vmap(outputs, in_dims=(0, None))
        batched_loss = torch.func.vmap(obj.loss_fn, in_dims=(0, None)) if per_point_loss else None
        sums = torch.zeros((2, points), dtype=torch.float64, device=obj.device)
        classified = True
        precision = self.evaluator.precision
        with torch.no_grad(), obj.model_mode():
            for x, y, w in obj.batches():
                with autocast(obj, precision):
                    out = forward(params, x)
                if is_reduced(precision):
                    out = out.float()  # the loss of float32 outputs, as on the one-point path
                if batched_loss is not None:
                    losses = batched_loss(out, y)
                else:  # a plain callable may not vmap: one call per point, still one forward
                    losses = torch.stack([obj.loss_fn(o, y) for o in out])
                sums[0] += w * losses.double()
                if out.dim() == 3 and y.dim() == 1 and not y.is_floating_point():
                    sums[1] += (out.argmax(dim=2) == y).sum(dim=1).double()
                else:
                    classified = False
        obj.reduce_([sums])
        result = sums.cpu().tolist()
        return [
            (result[0][i], result[1][i] / obj.num_samples if classified else float("nan"))
            for i in range(points)
        ]
