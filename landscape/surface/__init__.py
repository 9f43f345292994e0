"""Loss surfaces: directions (random normalized, interpolation, plane, PCA, eigen) and grid evaluation."""

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

__all__ = [
    "Direction",
    "PointEvaluator",
    "Surface",
    "compute_surface",
    "direction_dot",
    "direction_norm",
    "eigen_directions",
    "interpolation_direction",
    "normalize_direction",
    "parse_range",
    "random_directions",
    "snapshot",
    "target_tensors",
]
