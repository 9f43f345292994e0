"""Loss surfaces: directions (random normalized, interpolation, plane, PCA, eigen) and grid evaluation."""

from landscape.surface.api import init_distributed, surface_from_checkpoint
from landscape.surface.directions import (
    Direction,
    direction_dot,
    direction_norm,
    eigen_directions,
    interpolation_direction,
    normalize_direction,
    random_directions,
    snapshot,
    target_tensors,
)
from landscape.surface.grid import PointEvaluator, compute_surface, parse_range
from landscape.surface.store import Surface
from landscape.surface.trajectory import PCAResult, pca_directions, plane_directions, trajectory_files

__all__ = [
    "Direction",
    "PCAResult",
    "PointEvaluator",
    "Surface",
    "compute_surface",
    "direction_dot",
    "direction_norm",
    "eigen_directions",
    "init_distributed",
    "interpolation_direction",
    "normalize_direction",
    "parse_range",
    "pca_directions",
    "plane_directions",
    "random_directions",
    "snapshot",
    "surface_from_checkpoint",
    "target_tensors",
    "trajectory_files",
]
