"""Loss surfaces: directions (random normalized, interpolation, plane, PCA, eigen) and grid evaluation."""

from landscape.surface.api import (
    check_finite_tensors,
    default_surface_name,
    init_distributed,
    run_name,
    surface_from_checkpoint,
)
from landscape.surface.directions import (
    Direction,
    direction_dot,
    direction_norm,
    eigen_directions,
    interpolation_direction,
    is_variance,
    normalize_direction,
    random_directions,
    snapshot,
    target_tensors,
)
from landscape.surface.grid import PointEvaluator, compute_surface, parse_range
from landscape.surface.store import NonFiniteLossWarning, Surface, SurfaceMismatchError
from landscape.surface.trajectory import PCAResult, pca_directions, plane_directions, trajectory_files

__all__ = [
    "Direction",
    "NonFiniteLossWarning",
    "PCAResult",
    "PointEvaluator",
    "Surface",
    "SurfaceMismatchError",
    "check_finite_tensors",
    "compute_surface",
    "default_surface_name",
    "direction_dot",
    "direction_norm",
    "eigen_directions",
    "init_distributed",
    "interpolation_direction",
    "is_variance",
    "normalize_direction",
    "parse_range",
    "pca_directions",
    "plane_directions",
    "random_directions",
    "run_name",
    "snapshot",
    "surface_from_checkpoint",
    "target_tensors",
    "trajectory_files",
]
