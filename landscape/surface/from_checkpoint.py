"""One call from a checkpoint to a loss surface: what ``landscape plot1d``/``plot2d`` run.

Direction kinds (:mod:`landscape.surface.builders`): 1D ``random`` | ``interpolation`` (to a second
checkpoint) | ``eigen``; 2D ``random`` | ``plane`` (through three checkpoints) | ``pca`` (of a folder
of checkpoints) | ``eigen``. Under ``torchrun`` (``WORLD_SIZE > 1``) every rank joins the process
group here (:func:`landscape.distributed.process_group`), grid points are split across ranks and
rank 0 writes the file.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from landscape.data.datasets import DataSpec
from landscape.distributed import process_group
from landscape.errors import CheckpointError, ConfigError, check_choice
from landscape.models.checkpoints import Checkpoint, load_model
from landscape.objective.core import Objective
from landscape.objective.loading import objective_from_checkpoint
from landscape.runs import is_run_dir
from landscape.surface.builders import (
    DIR_TYPES_1D,
    DIR_TYPES_2D,
    DIRECTION_BUILDERS,
    REQUIRED_INPUT,
    BuiltDirections,
    DirectionRequest,
)
from landscape.surface.directions import MODES, Direction, bn_buffers, snapshot
from landscape.surface.grid import PointCallback, compute_surface
from landscape.surface.precision import PRECISIONS, check_precision
from landscape.surface.store import Surface

__all__ = [
    "DIR_TYPES_1D",
    "DIR_TYPES_2D",
    "CheckpointSource",
    "check_finite_tensors",
    "default_surface_name",
    "run_name",
    "surface_from_checkpoint",
]


@dataclass(frozen=True)
class CheckpointSource:
    """How a checkpoint becomes an objective: model, data and device settings.

    The fields are the keyword arguments of :func:`~landscape.objective.loading.objective_from_checkpoint`
    (the CLI's ``source`` options).

    Attributes:
        model: architecture override for :func:`~landscape.models.checkpoints.load_model`.
        model_kwargs: keyword arguments of the model factory.
        unsafe_load: allow unpickling whole modules.
        data: dataset name or file (default: the checkpoint's).
        data_dir: folder with local dataset files.
        split: ``train`` or ``test``.
        samples: fixed seeded subset size.
        batch_size: evaluation batch size.
        device: ``auto|cpu|cuda[:N]|mps``.
        dtype: model precision (``None``: as stored).
        loss: ``cross-entropy``, ``mse`` or ``pkg.mod:fn`` (``None``: the checkpoint's, else cross-entropy).
        data_kwargs: keyword arguments of the data's reader (``None``: the checkpoint's).
    """

    model: str | None = None
    model_kwargs: dict[str, Any] | None = None
    unsafe_load: bool = False
    data: str | None = None
    data_dir: str | None = None
    split: str | None = None
    samples: int | None = None
    batch_size: int = 256
    device: str = "auto"
    dtype: torch.dtype | None = None
    loss: str | None = None
    data_kwargs: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"batch_size={self.batch_size} must be >= 1 (examples per evaluation pass)")

    def load_kwargs(self) -> dict[str, Any]:
        """The arguments of :func:`~landscape.models.checkpoints.load_model`."""
        return {"model": self.model, "model_kwargs": self.model_kwargs, "unsafe_load": self.unsafe_load}

    def objective(
        self, checkpoint: str | Path, *, seed: int, device: str | None = None
    ) -> tuple[Objective, Checkpoint, DataSpec]:
        """The objective at ``checkpoint`` (``device`` overrides the field, e.g. a rank's GPU)."""
        kwargs = {f.name: getattr(self, f.name) for f in fields(self)}
        kwargs["device"] = device or self.device
        return objective_from_checkpoint(checkpoint, **kwargs, seed=seed)


def run_name(checkpoint: str | Path) -> str | None:
    """The run folder's name when ``checkpoint`` sits in one (``runs/sgd/final.pt``,
    ``runs/sgd/ckpts/epoch_003.pt`` -> ``sgd``), else ``None``."""
    parent = Path(checkpoint).resolve().parent
    for folder in (parent, parent.parent) if parent.name == "ckpts" else (parent,):
        if is_run_dir(folder):
            return folder.name
    return None


def default_surface_name(checkpoint: str | Path, dir_type: str, ndim: int) -> str:
    """``{run}_{stem}_{dir_type}_{ndim}d`` inside a run folder, else ``{stem}_{dir_type}_{ndim}d``.

    The run's name keeps ``final.pt`` of two runs from writing the same file.
    """
    run = run_name(checkpoint)
    stem = Path(checkpoint).stem
    return f"{run}_{stem}_{dir_type}_{ndim}d" if run else f"{stem}_{dir_type}_{ndim}d"


def check_finite_tensors(tensors: Iterable[tuple[str, torch.Tensor]], source: str | Path) -> None:
    """Refuse a checkpoint with NaN or infinite weights or buffers, naming the first bad tensor.

    Raises:
        CheckpointError: a floating tensor holds NaN or inf.
    """
    for name, t in tensors:
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            nan, inf = int(torch.isnan(t).sum()), int(torch.isinf(t).sum())
            raise CheckpointError(
                f"checkpoint {str(source)!r} has non-finite values in {name!r} ({nan} NaN, {inf} inf of "
                f"{t.numel()}), so every loss would be NaN; use an earlier checkpoint of the run"
            )


def _tensors_like(
    path: str | Path, objective: Objective, names: Sequence[str], load_kwargs: dict[str, Any]
) -> Direction:
    """The named tensors of another checkpoint of the same architecture, on the objective's device."""
    net, _ = load_model(path, **load_kwargs)
    live = dict(net.named_parameters())
    live.update(dict(net.named_buffers()))
    check_finite_tensors(((n, live[n]) for n in names if n in live), path)
    missing = [n for n in names if n not in live]
    if missing:
        raise ConfigError(
            f"checkpoint {str(path)!r} lacks tensors {missing[:5]}; it is not the same architecture"
        )
    return {n: live[n].detach().to(device=objective.device, dtype=objective.dtype) for n in names}


def check_direction_inputs(
    dir_type: str,
    ndim: int,
    *,
    to: str | Path | None = None,
    ckpts: Sequence[str | Path] | None = None,
    trajectory: str | Path | None = None,
) -> None:
    """Refuse a direction kind without its input, or an input without its kind, before any loading.

    Raises:
        ConfigError: naming the parameter and the kind it goes with.
    """
    check_choice("dir_type", dir_type, DIR_TYPES_1D if ndim == 1 else DIR_TYPES_2D)
    given = {"to": to, "ckpts": ckpts, "trajectory": trajectory}
    for kind, name in REQUIRED_INPUT.items():
        if (given[name] is not None) != (dir_type == kind):
            raise ConfigError(f"{name}= goes with dir_type={kind!r} (and {kind} needs {name}=)")
    if ckpts is not None and len(ckpts) != 2:
        raise ConfigError(f"ckpts= needs exactly two checkpoints (B and C), got {len(ckpts)}")


def default_mode(dir_type: str, objective: Objective, mode: str | None) -> str:
    """``states`` between checkpoints (interpolation, plane), else ``weights``; ``weights`` without
    batch-norm statistics to move (the same surface, recorded honestly)."""
    if mode is None:
        # Between checkpoints the batch-norm statistics must move too, or alpha = 1 is not the second
        # checkpoint (its weights with the first one's running statistics).
        mode = "states" if dir_type in ("interpolation", "plane") else "weights"
    check_choice("mode", mode, MODES)
    if mode == "states" and not bn_buffers(objective.model):
        mode = "weights"
    return mode


def _surface_metadata(
    built: BuiltDirections,
    *,
    dir_type: str,
    mode: str,
    ndim: int,
    checkpoint: str | Path,
    ckpt: Checkpoint,
    spec: DataSpec,
    label: str | None,
    world_size: int,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The settings that enter the fingerprint and the metadata recorded with the surface."""
    direction = {"kind": dir_type, "mode": mode, **built.record}
    labels = built.axis_labels[:1] + [""] if ndim == 1 else built.axis_labels
    run = run_name(checkpoint)
    # the other checkpoints' paths are recorded, not fingerprinted: their tensors already are
    settings = {"direction": {k: v for k, v in direction.items() if k not in ("to", "ckpts", "trajectory")}}
    meta = {
        "axis_labels": labels,
        **built.metadata,
        "direction": direction,
        "checkpoint": str(checkpoint),
        "model": ckpt.model_spec.to_dict() if ckpt.model_spec is not None else None,
        "data": spec.to_dict(),
        "label": label or (f"{run} ({Path(checkpoint).name})" if run else Path(checkpoint).stem),
        "run": run,
        "world_size": world_size,
    }
    return settings, meta


def surface_from_checkpoint(
    checkpoint: str | Path,
    *,
    xs: np.ndarray | Sequence[float],
    ys: np.ndarray | Sequence[float] | None = None,
    dir_type: str = "random",
    to: str | Path | None = None,
    ckpts: Sequence[str | Path] | None = None,
    trajectory: str | Path | None = None,
    fit_path: bool = False,
    norm: str = "filter",
    ignore: str = "biasbn",
    mode: str | None = None,
    seed: int = 0,
    bn: str = "fixed",
    precision: str = "float32",
    source: CheckpointSource | None = None,
    out: str | Path | None = None,
    overwrite: bool = False,
    eigen_tol: float = 1e-4,
    chunk_size: int = 8,
    points_per_pass: int | str = "auto",
    save_every: float = 10.0,
    max_points: int | None = None,
    label: str | None = None,
    callback: PointCallback | None = None,
    quiet: bool = False,
) -> Surface:
    """Load ``checkpoint``, build the directions, and compute (or resume) the surface file ``out``.

    Args:
        checkpoint: the base point (the centre of the surface; ``A`` of a plane; the end of a PCA).
        xs: coordinates along the first direction.
        ys: coordinates along the second direction (``None``: a 1D surface).
        dir_type: 1D ``random|interpolation|eigen``; 2D ``random|plane|pca|eigen``.
        to: second checkpoint of an interpolation (``alpha = 1``).
        ckpts: checkpoints ``B`` and ``C`` of a plane.
        trajectory: folder of checkpoints for PCA.
        fit_path: with ``pca``, replace the ranges of ``xs``/``ys`` (keeping their sizes) by the extent
            of the projected path and the centre, plus 15% on each side.
        norm: random-direction normalization ``filter|layer|model|none``.
        ignore: ``biasbn`` (zero 1-D tensors) or ``none``.
        mode: ``weights`` or ``states`` (batch-norm running statistics move too: means linearly,
            variances geometrically, see :mod:`landscape.surface.directions`); ``None``: states for
            interpolation and plane (each checkpoint lands on itself), weights otherwise. With
            ``weights`` every point keeps the first checkpoint's statistics, so ``alpha = 1`` of an
            interpolation is not the second checkpoint.
        seed: seed of every random draw (random directions, data subset, eigen start vector).
        bn: ``fixed`` or ``recalibrate``.
        precision: ``float32``, ``bfloat16`` or ``float16`` (forward under autocast, losses in
            float32; see :func:`landscape.surface.compute_surface`). A reduced precision needs a
            float32 model.
        source: model, data and device settings (default: the checkpoint's model and data, all
            of it, batches of 256, the best device).
        out: surface file (NPZ); resumed when it has the same settings.
        overwrite: replace a surface file made with other settings.
        eigen_tol: Lanczos tolerance of ``eigen`` directions.
        chunk_size: points per rank between gathers.
        points_per_pass: grid points per pass over the data, or ``'auto'`` (see
            :func:`landscape.surface.compute_surface`; not part of the fingerprint).
        save_every: seconds between atomic saves.
        max_points: stop after this many new points.
        label: legend label stored with the surface (default ``"run (file)"`` inside a run folder,
            else the file's stem).
        callback: called after each point (rank 0).
        quiet: no progress bars.

    Returns:
        The surface, also saved to ``out``.

    Raises:
        CheckpointError: a checkpoint holds NaN or infinite values (checked before anything is
            written).
        ConfigError: a bad option (a direction kind without its checkpoints, a reduced precision
            for a float64 model...), before anything is written.

    Warns:
        NonFiniteLossWarning: some grid points have a NaN or infinite loss.
    """
    source = source or CheckpointSource()
    xs = np.asarray(xs, dtype=np.float64)
    ys = None if ys is None else np.asarray(ys, dtype=np.float64)
    ndim = 1 if ys is None else 2
    check_direction_inputs(dir_type, ndim, to=to, ckpts=ckpts, trajectory=trajectory)
    check_choice("precision", precision, PRECISIONS)
    with process_group(source.device) as group:
        objective, ckpt, spec = source.objective(checkpoint, seed=seed, device=group.device)
        check_precision(precision, objective)  # before directions are built (eigen ones take long)
        check_finite_tensors(objective.model.state_dict().items(), checkpoint)
        load_kwargs = source.load_kwargs()
        if ckpt.model_spec is not None and load_kwargs["model"] is None:
            load_kwargs.update(model=ckpt.model_spec.name, model_kwargs=ckpt.model_spec.kwargs)
        mode = default_mode(dir_type, objective, mode)
        base = snapshot(objective, mode)
        request = DirectionRequest(
            objective=objective,
            base=base,
            checkpoint=checkpoint,
            ndim=ndim,
            xs=xs,
            ys=ys,
            load_other=lambda path: _tensors_like(path, objective, list(base), load_kwargs),
            mode=mode,
            seed=seed,
            norm=norm,
            ignore=ignore,
            to=to,
            ckpts=ckpts,
            trajectory=trajectory,
            fit_path=fit_path,
            eigen_tol=eigen_tol,
        )
        built = DIRECTION_BUILDERS[dir_type](request)
        settings, meta = _surface_metadata(
            built,
            dir_type=dir_type,
            mode=mode,
            ndim=ndim,
            checkpoint=checkpoint,
            ckpt=ckpt,
            spec=spec,
            label=label,
            world_size=group.world_size,
        )
        return compute_surface(
            objective,
            built.directions,
            built.xs if built.xs is not None else xs,
            built.ys if built.ys is not None else ys,
            path=out,
            overwrite=overwrite,
            bn=bn,
            precision=precision,
            settings=settings,
            metadata=meta,
            extras=built.extras,
            chunk_size=chunk_size,
            points_per_pass=points_per_pass,
            save_every=save_every,
            max_points=max_points,
            callback=callback,
            quiet=quiet,
        )
