"""One call from a checkpoint to a loss surface: what ``landscape plot1d``/``plot2d`` run.

Direction kinds: 1D ``random`` | ``interpolation`` (to a second checkpoint) | ``eigen``; 2D ``random`` |
``plane`` (through three checkpoints) | ``pca`` (of a folder of checkpoints) | ``eigen``. Under
``torchrun`` (``WORLD_SIZE > 1``) the process group is initialized here (gloo on CPU, nccl on CUDA),
grid points are split across ranks and rank 0 writes the file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from landscape.errors import CheckpointError, ConfigError, check_choice
from landscape.io.checkpoints import load_model
from landscape.loading import objective_from_checkpoint
from landscape.objective import Objective
from landscape.runs import is_run_dir
from landscape.surface.directions import (
    Direction,
    bn_buffers,
    eigen_directions,
    interpolation_direction,
    random_directions,
    snapshot,
)
from landscape.surface.grid import PointCallback, compute_surface
from landscape.surface.store import Surface
from landscape.surface.trajectory import path_grid, pca_directions, plane_directions, trajectory_files

DIR_TYPES_1D = ("random", "interpolation", "eigen")
DIR_TYPES_2D = ("random", "plane", "pca", "eigen")


def init_distributed(device: str = "auto") -> tuple[int, int, str, bool]:
    """Join the ``torchrun`` process group when ``WORLD_SIZE > 1`` (no-op otherwise).

    Returns:
        ``(rank, world_size, device, created)``; with CUDA each rank takes ``cuda:LOCAL_RANK``;
        ``created`` says this call initialized the group (and the caller should destroy it).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, device, False
    import torch.distributed as dist

    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        torch.cuda.set_device(torch.device(device))
    elif device == "auto":
        device = "cpu"
    created = not dist.is_initialized()
    if created:
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return dist.get_rank(), dist.get_world_size(), device, created


@contextmanager
def process_group(device: str = "auto") -> Iterator[tuple[int, int, str]]:
    """``init_distributed`` for the duration of a block; every rank leaves the group together."""
    rank, world, device, created = init_distributed(device)
    try:
        yield rank, world, device
    finally:
        if created:  # an early exit of one rank would abort the others' gloo pairs
            import torch.distributed as dist

            dist.barrier()
            dist.destroy_process_group()


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


def surface_from_checkpoint(
    checkpoint: str | Path,
    *,
    xs: np.ndarray,
    ys: np.ndarray | None = None,
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
    out: str | Path | None = None,
    overwrite: bool = False,
    model: str | None = None,
    model_kwargs: dict[str, Any] | None = None,
    unsafe_load: bool = False,
    data: str | None = None,
    data_dir: str | None = None,
    split: str | None = None,
    samples: int | None = None,
    batch_size: int = 256,
    device: str = "auto",
    dtype: torch.dtype | None = None,
    eigen_tol: float = 1e-4,
    chunk_size: int = 8,
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
        out: surface file (NPZ); resumed when it has the same settings.
        overwrite: replace a surface file made with other settings.
        model: architecture override for :func:`~landscape.io.checkpoints.load_model`.
        model_kwargs: keyword arguments of the model factory.
        unsafe_load: allow unpickling whole modules.
        data: dataset name or file (default: the checkpoint's).
        data_dir: folder with local dataset files.
        split: ``train`` or ``test``.
        samples: fixed seeded subset size.
        batch_size: evaluation batch size.
        device: ``auto|cpu|cuda[:N]|mps``.
        dtype: model precision (``None``: as stored).
        eigen_tol: Lanczos tolerance of ``eigen`` directions.
        chunk_size: points per rank between gathers.
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
        ConfigError: a bad option (``batch_size < 1``, a direction kind without its checkpoints...).

    Warns:
        NonFiniteLossWarning: some grid points have a NaN or infinite loss.
    """
    ndim = 1 if ys is None else 2
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size} must be >= 1 (examples per evaluation pass)")
    check_choice("dir_type", dir_type, DIR_TYPES_1D if ndim == 1 else DIR_TYPES_2D)
    if (to is not None) != (dir_type == "interpolation"):
        raise ConfigError("--to CKPT2 goes with --dir-type interpolation (and interpolation needs --to)")
    if (ckpts is not None) != (dir_type == "plane"):
        raise ConfigError("--ckpts B C goes with --dir-type plane (and a plane needs --ckpts B C)")
    if ckpts is not None and len(ckpts) != 2:
        raise ConfigError(f"--ckpts needs exactly two checkpoints (B and C), got {len(ckpts)}")
    if (trajectory is not None) != (dir_type == "pca"):
        raise ConfigError("--trajectory DIR goes with --dir-type pca (and pca needs --trajectory)")
    with process_group(device) as (_, world, device):
        load_kwargs = {"model": model, "model_kwargs": model_kwargs, "unsafe_load": unsafe_load}
        objective, ckpt, spec = objective_from_checkpoint(
            checkpoint,
            **load_kwargs,
            data=data,
            data_dir=data_dir,
            split=split,
            samples=samples,
            batch_size=batch_size,
            seed=seed,
            device=device,
            dtype=dtype,
        )
        check_finite_tensors(objective.model.state_dict().items(), checkpoint)
        if ckpt.model_spec is not None and load_kwargs["model"] is None:
            load_kwargs["model"] = ckpt.model_spec.name
            load_kwargs["model_kwargs"] = ckpt.model_spec.kwargs
        if mode is None:
            # Between checkpoints the batch-norm statistics must move too, or alpha = 1 is not the second
            # checkpoint (its weights with the first one's running statistics).
            mode = "states" if dir_type in ("interpolation", "plane") else "weights"
        check_choice("mode", mode, ("weights", "states"))
        if mode == "states" and not bn_buffers(objective.model):
            mode = "weights"  # no running statistics to move: the same surface, recorded honestly
        base = snapshot(objective, mode)
        names = list(base)
        direction: dict[str, Any] = {"kind": dir_type, "mode": mode}
        extras: dict[str, np.ndarray] = {}
        meta: dict[str, Any] = {"axis_labels": ["alpha", "beta"]}
        if dir_type == "random":
            dirs = random_directions(objective, ndim, seed=seed, norm=norm, ignore=ignore, mode=mode)
            direction.update({"norm": norm, "ignore": ignore, "seed": seed, "orthogonal": ndim == 2})
        elif dir_type == "interpolation":
            assert to is not None
            dirs = [interpolation_direction(base, _tensors_like(to, objective, names, load_kwargs))]
            direction["to"] = str(to)
            meta["axis_labels"] = ["alpha (0: checkpoint, 1: --to)", ""]
        elif dir_type == "plane":
            assert ckpts is not None
            b, c = (_tensors_like(p, objective, names, load_kwargs) for p in ckpts)
            dirs = plane_directions(base, b, c)
            direction["ckpts"] = [str(p) for p in ckpts]
            extras.update(points_x=np.array([0.0, 1.0, 0.0]), points_y=np.array([0.0, 0.0, 1.0]))
            meta["point_labels"] = [Path(checkpoint).stem, *(Path(p).stem for p in ckpts)]
            meta["axis_labels"] = ["B - A", "C - A"]
        elif dir_type == "pca":
            assert trajectory is not None
            files = trajectory_files(trajectory)
            points = [_tensors_like(p, objective, names, load_kwargs) for p in files]
            res = pca_directions(points, base, num=ndim, ignore=ignore, names=[p.stem for p in files])
            dirs = res.directions
            ratio = res.explained_variance_ratio
            direction.update(
                {
                    "trajectory": [str(p) for p in files],
                    "ignore": ignore,
                    "explained_variance_ratio": ratio[:ndim].tolist(),
                }
            )
            extras.update(path_x=res.path[:, 0], path_y=res.path[:, 1], explained_variance_ratio=ratio)
            if fit_path and ys is not None:
                xs, ys = path_grid(res.path, len(xs), len(ys))
            meta["axis_labels"] = [f"PC1 ({100 * ratio[0]:.1f}%)", f"PC2 ({100 * ratio[1]:.1f}%)"]
        else:
            dirs, evals = eigen_directions(objective, ndim, seed=seed, tol=eigen_tol)
            direction.update({"eigenvalues": evals.tolist(), "seed": seed, "tol": eigen_tol})
            extras["eigenvalues"] = evals
            meta["axis_labels"] = [f"v1 (lambda={evals[0]:.4g})", f"v2 (lambda={evals[-1]:.4g})"]
        if ndim == 1:
            meta["axis_labels"] = meta["axis_labels"][:1] + [""]
        run = run_name(checkpoint)
        settings = {
            "direction": {k: v for k, v in direction.items() if k not in ("to", "ckpts", "trajectory")}
        }
        meta.update(
            {
                "direction": direction,
                "checkpoint": str(checkpoint),
                "model": ckpt.model_spec.to_dict() if ckpt.model_spec is not None else None,
                "data": spec.to_dict(),
                "label": label or (f"{run} ({Path(checkpoint).name})" if run else Path(checkpoint).stem),
                "run": run,
                "world_size": world,
            }
        )
        return compute_surface(
            objective,
            dirs,
            xs,
            ys,
            path=out,
            overwrite=overwrite,
            bn=bn,
            settings=settings,
            metadata=meta,
            extras=extras,
            chunk_size=chunk_size,
            save_every=save_every,
            max_points=max_points,
            callback=callback,
            quiet=quiet,
        )
