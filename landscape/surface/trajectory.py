"""Directions from several checkpoints: the plane through three, and the PCA of a training trajectory.

**Plane** through ``A`` (the base), ``B`` and ``C``: ``d_1 = w_B - w_A``, ``d_2 = w_C - w_A``, so the
three checkpoints sit exactly at ``(0, 0)``, ``(1, 0)`` and ``(0, 1)`` (affine, not orthonormal, axes).

**PCA** (Li et al. 2018, Sec. 7): the matrix ``M`` whose rows are ``w_t - w_base`` for every checkpoint
``t`` of a trajectory (1-D tensors zeroed with ``ignore='biasbn'``), centred by its column means; the
directions are the top right singular vectors of ``M`` (unit norm, orthogonal), computed from the
``T x T`` Gram matrix so the cost is ``O(T^2 n)`` for ``T`` checkpoints of ``n`` parameters. The
explained variance ratio is ``s_k^2 / sum_j s_j^2``; the projected path is ``((w_t - w_base) . d_1,
(w_t - w_base) . d_2)``. Each component's sign is fixed so that its largest-magnitude entry is positive.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from landscape.errors import ConfigError, check_choice
from landscape.surface.directions import IGNORES, Direction, interpolation_direction
from landscape.surface.filters import FilterSpec, shape_spec

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".safetensors", ".bin")


@dataclass
class PCAResult:
    """Top principal directions of a trajectory and the path projected on them."""

    directions: list[Direction]
    explained_variance_ratio: np.ndarray
    path: np.ndarray  # (T, num) coordinates of every checkpoint
    names: list[str]


def plane_directions(
    base: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor], c: Mapping[str, torch.Tensor]
) -> list[Direction]:
    """``[w_B - w_A, w_C - w_A]``: the plane through three checkpoints (A at the origin)."""
    return [interpolation_direction(base, b), interpolation_direction(base, c)]


def _natural_key(p: Path) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)]


def trajectory_files(folder: str | Path) -> list[Path]:
    """Checkpoint files of a folder in natural name order (``step_2`` before ``step_10``).

    Raises:
        ConfigError: the folder does not exist or has fewer than two checkpoints.
    """
    root = Path(folder)
    if not root.is_dir():
        raise ConfigError(f"trajectory={str(root)!r} is not a folder of checkpoints")
    files = sorted(
        (p for p in root.iterdir() if p.is_file() and p.suffix in CHECKPOINT_SUFFIXES), key=_natural_key
    )
    if len(files) < 2:
        raise ConfigError(
            f"trajectory={str(root)!r} holds {len(files)} checkpoint(s) "
            f"({', '.join(CHECKPOINT_SUFFIXES)}); PCA needs at least 2"
        )
    return files


def _flatten(d: Mapping[str, torch.Tensor], names: Sequence[str], keep: Mapping[str, bool]) -> torch.Tensor:
    parts = [d[n].detach().reshape(-1).to("cpu", torch.float64) for n in names]
    parts = [p if keep[n] else torch.zeros_like(p) for p, n in zip(parts, names)]
    return torch.cat(parts)


def pca_directions(
    points: Sequence[Mapping[str, torch.Tensor]],
    base: Mapping[str, torch.Tensor],
    *,
    num: int = 2,
    ignore: str = "biasbn",
    names: Sequence[str] | None = None,
    filters: Mapping[str, FilterSpec] | None = None,
) -> PCAResult:
    """Principal directions of ``points - base`` (see the module docstring).

    Args:
        points: the trajectory, each a ``name -> tensor`` mapping with the base's names.
        base: the point the surface is centred on (usually the last checkpoint).
        num: number of directions (1 or 2).
        ignore: ``biasbn`` leaves biases and norm-layer parameters out (zero in the directions), or
            ``none``.
        names: labels of the points (default ``0..T-1``).
        filters: each tensor's :class:`~landscape.surface.filters.FilterSpec` (from the model that
            owns it: :func:`~landscape.surface.filters.filter_specs`); without it, by shape.

    Returns:
        The directions (float64 tensors on the base's devices), the explained variance ratio of
        every component (length ``min(T, n)``, descending), and the projected path ``(T, num)``.
    """
    check_choice("ignore", ignore, IGNORES)
    check_choice("num", num, (1, 2))
    if len(points) < 2:
        raise ConfigError(f"PCA needs at least 2 trajectory points, got {len(points)}")
    tnames = list(base)
    specs = {n: filters[n] if filters is not None and n in filters else shape_spec(base[n]) for n in tnames}
    keep = {n: ignore == "none" or specs[n].has_filters for n in tnames}
    diffs = [interpolation_direction(base, p) for p in points]
    X = torch.stack([_flatten(d, tnames, keep) for d in diffs])  # (T, n)
    Xc = X - X.mean(dim=0, keepdim=True)
    G = Xc @ Xc.T
    evals, evecs = torch.linalg.eigh(G)
    order = torch.argsort(evals, descending=True)
    evals, evecs = evals[order].clamp_min(0), evecs[:, order]
    total = float(evals.sum())
    if total <= 0 or float(evals[num - 1]) <= 1e-30 * max(total, 1e-300):
        raise ConfigError(f"the trajectory spans fewer than {num} dimension(s); PCA directions are undefined")
    comps = []
    for k in range(num):
        v = Xc.T @ evecs[:, k] / torch.sqrt(evals[k])
        v = v / v.norm()
        if v[torch.argmax(v.abs())] < 0:
            v = -v
        comps.append(v)
    path = (X @ torch.stack(comps, dim=1)).numpy()
    directions: list[Direction] = []
    for v in comps:
        d: Direction = {}
        offset = 0
        for n in tnames:
            size = base[n].numel()
            d[n] = (
                v[offset : offset + size]
                .reshape(base[n].shape)
                .to(device=base[n].device, dtype=base[n].dtype)
            )
            offset += size
        directions.append(d)
    ratio = (evals / total).numpy()[: min(len(points), X.shape[1])]
    return PCAResult(
        directions=directions,
        explained_variance_ratio=ratio,
        path=path,
        names=list(names) if names is not None else [str(i) for i in range(len(points))],
    )


def path_grid(path: np.ndarray, nx: int, ny: int, *, margin: float = 0.15) -> tuple[np.ndarray, np.ndarray]:
    """A grid that holds the projected path and the centre, with ``margin`` of the span on each side.

    Args:
        path: ``(T, 2)`` coordinates of the trajectory in the plane.
        nx: points along the first axis.
        ny: points along the second axis.
        margin: padding as a fraction of each axis' span.
    """
    axes = []
    for values, num in ((path[:, 0], nx), (path[:, 1], ny)):
        lo, hi = min(float(values.min()), 0.0), max(float(values.max()), 0.0)
        pad = margin * (hi - lo) if hi > lo else 1.0
        axes.append(np.linspace(lo - pad, hi + pad, num))
    return axes[0], axes[1]
