"""Direction builders of :func:`~landscape.surface.from_checkpoint.surface_from_checkpoint`, by kind.

Each builder turns a :class:`DirectionRequest` (the objective at the base checkpoint and the
options of its kind) into :class:`BuiltDirections`: the directions, what is recorded about them
(``direction`` metadata, arrays such as a projected path), axis labels, and optionally a grid of
its own (PCA fitted to the path). Adding a kind is one function and one entry of
:data:`DIRECTION_BUILDERS`; a kind that needs an input of its own (a second checkpoint, a folder)
names it in :data:`REQUIRED_INPUT`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from landscape.objective.core import Objective
from landscape.surface.directions import (
    Direction,
    eigen_directions,
    interpolation_direction,
    random_directions,
)
from landscape.surface.filters import filter_specs
from landscape.surface.trajectory import path_grid, pca_directions, plane_directions, trajectory_files

DIR_TYPES_1D = ("random", "interpolation", "eigen")
DIR_TYPES_2D = ("random", "plane", "pca", "eigen")
# the Python parameter each kind needs, and that no other kind takes
REQUIRED_INPUT = {"interpolation": "to", "plane": "ckpts", "pca": "trajectory"}


@dataclass
class DirectionRequest:
    """What a builder gets: the objective at the base point and the options of every kind.

    Attributes:
        objective: model + data at the base checkpoint.
        base: snapshot of the moved tensors (parameters, plus running statistics in ``states``).
        checkpoint: the base checkpoint's path (labels of marked points).
        ndim: 1 or 2 directions.
        xs: the grid along the first direction.
        ys: the grid along the second direction (``None``: 1D).
        load_other: ``path -> tensors`` of another checkpoint, named like ``base``.
        mode: ``weights`` or ``states``.
        seed: seed of random directions and of the Lanczos start vector.
        norm: random-direction normalization.
        ignore: ``biasbn`` or ``none``.
        to: the second checkpoint of an interpolation.
        ckpts: checkpoints ``B`` and ``C`` of a plane.
        trajectory: folder of checkpoints for PCA.
        fit_path: fit the PCA grid to the projected path.
        eigen_tol: Lanczos tolerance of eigen directions.
    """

    objective: Objective
    base: Direction
    checkpoint: str | Path
    ndim: int
    xs: np.ndarray
    ys: np.ndarray | None
    load_other: Callable[[str | Path], Direction]
    mode: str = "weights"
    seed: int = 0
    norm: str = "filter"
    ignore: str = "biasbn"
    to: str | Path | None = None
    ckpts: Sequence[str | Path] | None = None
    trajectory: str | Path | None = None
    fit_path: bool = False
    eigen_tol: float = 1e-4


@dataclass
class BuiltDirections:
    """A builder's answer.

    Attributes:
        directions: one per grid axis.
        record: the ``direction`` metadata (kind-specific settings and summaries).
        axis_labels: labels of the two figure axes.
        extras: arrays stored with the surface (projected path, marked points, eigenvalues).
        metadata: further metadata (``point_labels`` of marked points).
        xs: a grid of the builder's own (``None``: the request's).
        ys: likewise along the second direction.
    """

    directions: list[Direction]
    record: dict[str, Any]
    axis_labels: list[str]
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    xs: np.ndarray | None = None
    ys: np.ndarray | None = None


def random_builder(req: DirectionRequest) -> BuiltDirections:
    """Filter- (layer-, model-) normalized Gaussian directions, orthogonal in 2D (Li et al. 2018)."""
    dirs = random_directions(
        req.objective, req.ndim, seed=req.seed, norm=req.norm, ignore=req.ignore, mode=req.mode
    )
    record = {"norm": req.norm, "ignore": req.ignore, "seed": req.seed, "orthogonal": req.ndim == 2}
    return BuiltDirections(dirs, record, ["alpha", "beta"])


def interpolation_builder(req: DirectionRequest) -> BuiltDirections:
    """``w_to - w_base``, so ``alpha = 1`` is the second checkpoint."""
    assert req.to is not None
    dirs = [interpolation_direction(req.base, req.load_other(req.to))]
    label = f"alpha (0: {Path(req.checkpoint).stem}, 1: {Path(req.to).stem})"
    return BuiltDirections(dirs, {"to": str(req.to)}, [label, ""])


def plane_builder(req: DirectionRequest) -> BuiltDirections:
    """The plane through the base (0, 0), ``B`` (1, 0) and ``C`` (0, 1)."""
    assert req.ckpts is not None
    b, c = (req.load_other(p) for p in req.ckpts)
    return BuiltDirections(
        plane_directions(req.base, b, c),
        {"ckpts": [str(p) for p in req.ckpts]},
        ["B - A", "C - A"],
        extras={"points_x": np.array([0.0, 1.0, 0.0]), "points_y": np.array([0.0, 0.0, 1.0])},
        metadata={"point_labels": [Path(req.checkpoint).stem, *(Path(p).stem for p in req.ckpts)]},
    )


def pca_builder(req: DirectionRequest) -> BuiltDirections:
    """Top principal directions of a trajectory around the base, with the projected path."""
    assert req.trajectory is not None
    files = trajectory_files(req.trajectory)
    points = [req.load_other(p) for p in files]
    res = pca_directions(
        points,
        req.base,
        num=req.ndim,
        ignore=req.ignore,
        names=[p.stem for p in files],
        filters=filter_specs(req.objective.model),
    )
    ratio = res.explained_variance_ratio
    record = {
        "trajectory": [str(p) for p in files],
        "ignore": req.ignore,
        "explained_variance_ratio": ratio[: req.ndim].tolist(),
    }
    built = BuiltDirections(
        res.directions,
        record,
        [f"PC1 ({100 * ratio[0]:.1f}%)", f"PC2 ({100 * ratio[1]:.1f}%)"],
        extras={"path_x": res.path[:, 0], "path_y": res.path[:, 1], "explained_variance_ratio": ratio},
    )
    if req.fit_path and req.ys is not None:
        built.xs, built.ys = path_grid(res.path, len(req.xs), len(req.ys))
    return built


def eigen_builder(req: DirectionRequest) -> BuiltDirections:
    """The top Hessian eigenvectors (Lanczos) as unit directions."""
    dirs, evals = eigen_directions(req.objective, req.ndim, seed=req.seed, tol=req.eigen_tol)
    return BuiltDirections(
        dirs,
        {"eigenvalues": evals.tolist(), "seed": req.seed, "tol": req.eigen_tol},
        [f"v1 (lambda={evals[0]:.4g})", f"v2 (lambda={evals[-1]:.4g})"],
        extras={"eigenvalues": evals},
    )


DirectionBuilder = Callable[[DirectionRequest], BuiltDirections]
DIRECTION_BUILDERS: dict[str, DirectionBuilder] = {
    "random": random_builder,
    "interpolation": interpolation_builder,
    "plane": plane_builder,
    "pca": pca_builder,
    "eigen": eigen_builder,
}
