"""Grid evaluation of a loss surface: in place, resumable, split across ``torch.distributed`` ranks.

At each grid point ``(a, b)`` the moved tensors are set in place to ``w = w_0 + a d_1 + b d_2``
(computed from the saved base ``w_0`` every time, so no error accumulates and no model is copied;
batch-norm running variances as ``v_0 exp(a d_1 + b d_2)``, see :mod:`landscape.surface.directions`),
the loss and accuracy are evaluated over the objective's fixed data, and at the end the base is
copied back bit for bit. With ``bn='recalibrate'`` the batch-norm running statistics are re-estimated
at every point (reset, one pass in training mode with ``momentum=None``, i.e. the exact average over
batches) before evaluating in evaluation mode; the base buffers are restored at the end. With
``precision='bfloat16'|'float16'`` every forward (recalibration included) runs under autocast and a
few points are evaluated again in float32 (:mod:`landscape.surface.precision`).

The computed points are saved atomically to the surface file every ``save_every`` seconds (and at the
end, and on ``KeyboardInterrupt`` before it propagates); a rerun with the same settings computes
only the missing points. A point whose loss is not finite (NaN or inf) is kept as it came in the
file, its accuracy is recorded as NaN (its outputs are not numbers, so their argmax is no
prediction), and a :class:`NonFiniteLossWarning` gives the count. Under ``torchrun`` each rank
evaluates every ``world_size``-th point of each chunk, rank 0 gathers and writes: the file is the
same as a single process's.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from landscape.distributed import all_gather_objects, my_share, rank_and_world_size
from landscape.errors import ConfigError, check_choice
from landscape.io.digest import settings_digest, tensors_digest
from landscape.objective.core import Objective
from landscape.objective.digest import data_digest
from landscape.progress import Progress
from landscape.surface.batched import DEFAULT_MEMORY_BUDGET, BatchedPointEvaluator, choose_points_per_pass
from landscape.surface.directions import describe_directions, is_variance, log_space_dtype
from landscape.surface.precision import (
    autocast,
    check_points,
    check_precision,
    check_surface_points,
    evaluate_in_precision,
    is_reduced,
)
from landscape.surface.store import NonFiniteLossWarning, Surface, check_resumable

BN_POLICIES = ("fixed", "recalibrate")
PointCallback = Callable[[int, float, float], None]


def _bn_modules(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


class PointEvaluator:
    """Sets the model to ``base + sum_k c_k d_k`` in place and evaluates it.

    Use as a context manager, or call :meth:`restore` at the end: the moved tensors (and, with
    recalibration, every batch-norm buffer) get their base values back bit for bit.

    Args:
        objective: the objective whose model is moved.
        directions: one or two directions (``name -> tensor``); names not in a direction stay put.
        base: the base point (defaults to a snapshot of the tensors the directions name).
        bn: ``fixed`` (keep the buffers) or ``recalibrate`` (re-estimate them at every point).
        precision: ``float32``, or ``bfloat16``/``float16`` to run every forward under autocast
            (:mod:`landscape.surface.precision`); the moved tensors stay in the model's dtype.
    """

    def __init__(
        self,
        objective: Objective,
        directions: Sequence[Mapping[str, torch.Tensor]],
        *,
        base: Mapping[str, torch.Tensor] | None = None,
        bn: str = "fixed",
        precision: str = "float32",
    ) -> None:
        check_choice("bn", bn, BN_POLICIES)
        check_precision(precision, objective)
        if not directions:
            raise ConfigError("at least one direction is needed")
        self.objective = objective
        self.bn = bn
        self.precision = precision
        live = dict(zip(objective.param_names, objective.params))
        live.update(dict(objective.model.named_buffers()))
        names = list(dict.fromkeys(n for d in directions for n in d))
        unknown = [n for n in names if n not in live]
        if unknown:
            raise ConfigError(f"directions name tensors the model does not have: {unknown[:5]}")
        self.live = {n: live[n] for n in names}
        self.base = (
            {n: t.detach().clone() for n, t in self.live.items()}
            if base is None
            else {n: base[n].detach().to(self.live[n]) for n in names}
        )
        # log-space entries keep their own (float64) dtype: a float32 log-ratio would miss alpha = 1
        self.log_space = {n for n in names if is_variance(n) and self.live[n].is_floating_point()}
        self.directions = [
            {
                n: t.detach().to(self.live[n].device, log_space_dtype(self.live[n].device))
                if n in self.log_space
                else t.detach().to(self.live[n])
                for n, t in d.items()
            }
            for d in directions
        ]
        self._bn_saved: dict[str, torch.Tensor] = {}
        if bn == "recalibrate":
            bns = _bn_modules(objective.model)
            if not bns:
                raise ConfigError("bn='recalibrate' needs a model with batch-norm layers; use bn='fixed'")
            if objective.bn_mode != "eval":
                raise ConfigError(
                    f"bn='recalibrate' needs the objective in bn_mode='eval', not {objective.bn_mode!r}"
                )
            for mname, m in objective.model.named_modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    for bname, b in m.named_buffers(recurse=False):
                        self._bn_saved[f"{mname}.{bname}"] = b.detach().clone()

    def set_point(self, coords: Sequence[float]) -> None:
        """Set the moved tensors to ``base + sum_k coords[k] * d_k`` in place.

        Running variances: ``base * exp(sum_k coords[k] * d_k)`` (log space, computed in float64).
        """
        if len(coords) != len(self.directions):
            raise ConfigError(f"{len(coords)} coordinates for {len(self.directions)} directions")
        with torch.no_grad():
            for n, t in self.live.items():
                terms = [(float(c), d[n]) for c, d in zip(coords, self.directions) if c != 0.0 and n in d]
                if not terms:
                    t.copy_(self.base[n])
                    continue
                if n in self.log_space:
                    log_ratio = terms[0][0] * terms[0][1]
                    for c, d in terms[1:]:
                        log_ratio = log_ratio + c * d
                    t.copy_(self.base[n].to(log_ratio.dtype) * torch.exp(log_ratio))
                    continue
                # base + c_1 d_1 in one pass (no separate copy), then the other terms in place
                torch.add(self.base[n], terms[0][1], alpha=terms[0][0], out=t)
                for c, d in terms[1:]:
                    t.add_(d, alpha=c)

    def recalibrate(self, precision: str | None = None) -> None:
        """Re-estimate batch-norm running statistics on the objective's data (exact average).

        The pass runs in ``precision`` (default: the evaluator's), so the statistics are those of
        the activations the evaluation in that precision normalizes; the buffers stay float32.
        """
        model = self.objective.model
        bns = _bn_modules(model)
        saved = [(m.training, m.momentum) for m in bns]
        try:
            for m in bns:
                m.reset_running_stats()
                m.momentum = None
                m.train()
            with torch.no_grad(), autocast(self.objective, precision or self.precision):
                for x, _, _ in self.objective.batches():
                    self.objective.outputs(x)
        finally:
            for m, (training, momentum) in zip(bns, saved):
                m.train(training)
                m.momentum = momentum

    def evaluate(self, coords: Sequence[float], *, precision: str | None = None) -> tuple[float, float]:
        """Loss and accuracy at ``base + sum_k coords[k] d_k`` (in ``precision``, default the
        evaluator's; ``'float32'`` is :meth:`Objective.evaluate` itself)."""
        precision = precision or self.precision
        self.set_point(coords)
        if self.bn == "recalibrate":
            self.recalibrate(precision)
        if is_reduced(precision):
            return evaluate_in_precision(self.objective, precision)
        ev = self.objective.evaluate()
        return ev.loss, ev.accuracy

    def restore(self) -> None:
        """Copy the base (and saved batch-norm buffers) back, bit for bit."""
        with torch.no_grad():
            for n, t in self.live.items():
                t.copy_(self.base[n])
            if self._bn_saved:
                buffers = dict(self.objective.model.named_buffers())
                for n, b in self._bn_saved.items():
                    buffers[n].copy_(b)

    def __enter__(self) -> PointEvaluator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.restore()


def surface_fingerprint(
    objective: Objective,
    evaluator: PointEvaluator,
    xs: np.ndarray,
    ys: np.ndarray | None,
    *,
    bn: str,
    settings: Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """The fingerprint of a surface, the settings it is made of, and the metadata to record.

    The base weights, the directions, the grid, the data, ``bn`` and the objective's policy always
    enter it, and the evaluator's precision when it is reduced (a float32 surface keeps the
    fingerprint it had before precisions existed, so its files still resume); ``settings`` adds
    the caller's (direction kind, seed...).

    Returns:
        ``(fingerprint, parts, metadata)``.
    """
    described = describe_directions(evaluator.directions, evaluator.base)
    parts: dict[str, Any] = dict(settings or {})
    parts.update(
        {
            "format": 1,
            "base": tensors_digest(evaluator.base.items()),
            "directions": described["digest"],
            "xs": xs.tolist(),
            "ys": None if ys is None else ys.tolist(),
            "data": data_digest(objective),
            "num_samples": objective.num_samples,
            "bn": bn,
            "bn_mode": objective.bn_mode,
            "dtype": str(objective.dtype),
            "loss_fn": type(objective.loss_fn).__name__,
        }
    )
    if is_reduced(evaluator.precision):
        parts["precision"] = evaluator.precision
    meta = dict(metadata or {})
    meta.update(
        {
            "fingerprint_parts": parts,
            "objective": objective.metadata(),
            "bn": bn,
            "directions": described,
            "precision": evaluator.precision,
        }
    )
    return settings_digest(parts), parts, meta


def open_or_resume(
    path: str | Path | None,
    xs: np.ndarray,
    ys: np.ndarray | None,
    *,
    fingerprint: str,
    parts: dict[str, Any],
    metadata: dict[str, Any],
    overwrite: bool = False,
) -> Surface:
    """The surface file at ``path`` when it has the same fingerprint, else a new empty surface.

    Raises:
        SurfaceMismatchError: ``path`` holds a surface made with other settings and not ``overwrite``.
    """
    if path is not None and Path(path).exists() and not overwrite:
        surface = Surface.load(path)
        check_resumable(surface, fingerprint, parts, path)
        surface.metadata.update(metadata)
        return surface
    return Surface.empty(xs, ys, metadata=metadata, fingerprint=fingerprint)


def _evaluate_points(
    surface: Surface,
    evaluate: Callable[[list[tuple[float, ...]]], list[tuple[float, float]]],
    todo: np.ndarray,
    *,
    save: Callable[[], None],
    chunk_size: int,
    points_per_pass: int,
    save_every: float,
    callback: PointCallback | None,
    quiet: bool,
) -> None:
    """Fill the points ``todo`` of ``surface`` chunk by chunk, each rank its share, saving as it goes.

    ``evaluate(coords)`` returns ``(loss, accuracy)`` for each point of a pass; each rank's share of a
    chunk goes through it ``points_per_pass`` points at a time.
    """
    rank, world = rank_and_world_size()
    flat_loss, flat_acc, flat_done = (a.reshape(-1) for a in (surface.loss, surface.accuracy, surface.done))
    per_rank = max(chunk_size, points_per_pass)

    def record(k: int, loss: float, acc: float) -> None:
        if not np.isfinite(loss):
            acc = float("nan")  # the outputs are not numbers: no prediction to score
        flat_loss[k], flat_acc[k], flat_done[k] = loss, acc, True
        if callback is not None and rank == 0:
            callback(k, loss, acc)

    last_save = time.monotonic()
    with Progress(len(todo), "surface", quiet=quiet or rank != 0, unit="pt") as bar:
        for start in range(0, len(todo), per_rank * world):
            chunk = todo[start : start + per_rank * world]
            mine = [int(k) for k in my_share(chunk, rank, world)]
            results: list[tuple[int, float, float]] = []
            for first in range(0, len(mine), points_per_pass):
                ks = mine[first : first + points_per_pass]
                done = [(k, *r) for k, r in zip(ks, evaluate([surface.coordinates(k) for k in ks]))]
                if world == 1:  # kept at once, so an interruption saves every finished pass
                    for k, loss, acc in done:
                        record(k, loss, acc)
                    bar.update(len(done))
                else:
                    results.extend(done)
            if world > 1:
                for part in all_gather_objects(results, world):
                    for k, loss, acc in part:
                        record(k, loss, acc)
                bar.update(len(chunk))
            if save_every <= 0 or time.monotonic() - last_save >= save_every:
                save()
                last_save = time.monotonic()


def _pass_function(
    evaluator: PointEvaluator, points_per_pass: int
) -> Callable[[list[tuple[float, ...]]], list[tuple[float, float]]]:
    """``coords -> [(loss, accuracy), ...]``: the one-point path, or one vmapped pass for them all."""
    if points_per_pass == 1:
        return lambda coords: [evaluator.evaluate(c) for c in coords]
    return BatchedPointEvaluator(evaluator).evaluate


def _float32_check(surface: Surface, evaluator: PointEvaluator) -> dict[str, Any]:
    """The reduced-precision surface against float32 at its computed check points (every rank
    evaluates them: a sharded objective reduces over all ranks)."""
    points = check_points(surface.xs, surface.ys)
    return check_surface_points(
        surface.loss,
        surface.accuracy,
        surface.done,
        points,
        surface.coordinates,
        lambda coords: evaluator.evaluate(coords, precision="float32"),
    )


def compute_surface(
    objective: Objective,
    directions: Sequence[Mapping[str, torch.Tensor]],
    xs: np.ndarray | Sequence[float],
    ys: np.ndarray | Sequence[float] | None = None,
    *,
    path: str | Path | None = None,
    overwrite: bool = False,
    bn: str = "fixed",
    precision: str = "float32",
    settings: Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
    extras: Mapping[str, np.ndarray] | None = None,
    chunk_size: int = 8,
    points_per_pass: int | str = "auto",
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    save_every: float = 10.0,
    max_points: int | None = None,
    callback: PointCallback | None = None,
    quiet: bool = False,
) -> Surface:
    """Evaluate loss and accuracy on a 1D (``ys=None``) or 2D grid, resumably.

    Args:
        objective: model + data; its model is moved in place and restored at the end.
        directions: one direction for 1D, two for 2D.
        xs: coordinates along ``directions[0]``.
        ys: coordinates along ``directions[1]`` (2D only).
        path: surface file (NPZ). If it exists with the same fingerprint, only missing points are
            computed; with another fingerprint it is refused unless ``overwrite``.
        overwrite: discard an existing file made with other settings.
        bn: ``fixed`` or ``recalibrate`` (see :class:`PointEvaluator`).
        precision: ``float32`` (default), ``bfloat16`` or ``float16``: the forward of every point
            under ``torch.autocast`` with float32 outputs, losses and weights
            (:mod:`landscape.surface.precision`). It enters the fingerprint (a file never mixes
            precisions); a reduced precision also evaluates a few points (:func:`check_points`)
            in float32 and records ``metadata['precision_check']``: the points, both losses,
            ``max_abs_diff``, ``max_rel_diff`` and ``max_accuracy_diff``.
        settings: extra settings that enter the fingerprint (direction kind, seed, checkpoint...).
            The base weights, the directions, the grid, the data and ``bn`` always enter it.
        metadata: recorded in the file, not fingerprinted.
        extras: arrays stored with the surface (e.g. a projected trajectory).
        chunk_size: points per rank between gathers (and the granularity of saves); at least
            ``points_per_pass``.
        points_per_pass: grid points evaluated in one pass over the data (a vmapped forward of
            stacked parameter sets, :mod:`landscape.surface.batched`), or ``'auto'``: as many as
            ``memory_budget`` allows for small models, 1 for large ones and with
            ``bn='recalibrate'``. 1 is the sequential path. It does not change the results (beyond
            rounding) and does not enter the fingerprint; the number used and why are recorded in
            the metadata (``points_per_pass``, ``points_per_pass_reason``).
        memory_budget: bytes of stacked tensors and activations per pass for ``'auto'``.
        save_every: seconds between atomic saves (0: after every chunk); the end is always saved.
        max_points: stop after this many new points (the file stays resumable).
        callback: ``callback(flat_index, loss, accuracy)`` after each point (rank 0).
        quiet: no progress bar.

    Returns:
        The surface (complete unless ``max_points`` stopped it).

    Warns:
        NonFiniteLossWarning: some computed points have a NaN or infinite loss (the count is
            also :attr:`Surface.num_nonfinite`).

    Raises:
        SurfaceMismatchError: ``path`` holds a surface made with other settings.
        ConfigError: bad grid or direction count; a reduced precision with a model that is not
            float32, or on a device whose autocast does not support it.
        KeyboardInterrupt: re-raised after the points computed so far are saved to ``path``.
    """
    xs = np.asarray(xs, dtype=np.float64)
    ys = None if ys is None else np.asarray(ys, dtype=np.float64)
    ndim = 1 if ys is None else 2
    if len(directions) != ndim:
        raise ConfigError(f"a {ndim}D grid needs {ndim} direction(s), got {len(directions)}")
    if chunk_size < 1:
        raise ConfigError(f"chunk_size={chunk_size} must be >= 1")
    rank, world = rank_and_world_size()
    if world > 1 and objective.shard is not None:
        raise ConfigError("split either the grid points or the data across ranks, not both (shard=None)")

    evaluator = PointEvaluator(objective, directions, bn=bn, precision=precision)
    per_pass, per_pass_reason = choose_points_per_pass(
        evaluator, points_per_pass, memory_budget=memory_budget
    )
    fp, parts, meta = surface_fingerprint(
        objective, evaluator, xs, ys, bn=bn, settings=settings, metadata=metadata
    )
    # how the points were computed, not what they are: recorded, never fingerprinted
    meta.update(points_per_pass=per_pass, points_per_pass_reason=per_pass_reason)
    surface = open_or_resume(path, xs, ys, fingerprint=fp, parts=parts, metadata=meta, overwrite=overwrite)
    if extras:
        surface.extras.update({k: np.asarray(v) for k, v in extras.items()})
    todo = np.flatnonzero(~surface.done.reshape(-1))
    if max_points is not None:
        todo = todo[: max(0, int(max_points))]

    def save() -> None:
        if path is not None and rank == 0:
            surface.save(path)

    if path is not None and not Path(path).exists():
        save()  # an empty file records the settings at once
    try:
        with evaluator:
            _evaluate_points(
                surface,
                _pass_function(evaluator, per_pass),
                todo,
                save=save,
                chunk_size=chunk_size,
                points_per_pass=per_pass,
                save_every=save_every,
                callback=callback,
                quiet=quiet,
            )
            if is_reduced(precision):
                surface.metadata["precision_check"] = _float32_check(surface, evaluator)
    except KeyboardInterrupt:
        save()  # keep every point computed since the last periodic save, then stop as asked
        raise
    save()
    if rank == 0 and surface.num_nonfinite:
        warnings.warn(
            NonFiniteLossWarning(
                f"{surface.num_nonfinite} of {surface.num_done} grid points have a non-finite loss "
                "(NaN or inf); they are kept in the surface file and left out of figures and summaries"
            ),
            stacklevel=2,
        )
    return surface
