"""Loss surfaces: directions (random normalized, interpolation, plane, PCA, eigen) and grid evaluation."""

from landscape.surface.builders import DIR_TYPES_1D, DIR_TYPES_2D, DIRECTION_BUILDERS
from landscape.surface.directions import (
    IGNORES,
    MODES,
    NORMS,
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
from landscape.surface.filters import FilterSpec, filter_specs
from landscape.surface.from_checkpoint import (
    CheckpointSource,
    check_finite_tensors,
    default_surface_name,
    run_name,
    surface_from_checkpoint,
)
from landscape.surface.grid import BN_POLICIES, PointEvaluator, compute_surface
from landscape.surface.precision import PRECISIONS
from landscape.surface.store import NonFiniteLossWarning, Surface, SurfaceMismatchError
from landscape.surface.trajectory import PCAResult, pca_directions, plane_directions, trajectory_files

__all__ = [
    "BN_POLICIES",
    "DIRECTION_BUILDERS",
    "DIR_TYPES_1D",
    "DIR_TYPES_2D",
    "IGNORES",
    "MODES",
    "NORMS",
    "PRECISIONS",
    "CheckpointSource",
    "Direction",
    "FilterSpec",
    "NonFiniteLossWarning",
    "PCAResult",
    "PointEvaluator",
    "Surface",
    "SurfaceMismatchError",
    "check_finite_tensors",
    "compute_surface",
    "default_surface_name",
    "direction_dot",
    "filter_specs",
    "direction_norm",
    "eigen_directions",
    "interpolation_direction",
    "is_variance",
    "normalize_direction",
    "pca_directions",
    "plane_directions",
    "random_directions",
    "run_name",
    "snapshot",
    "surface_from_checkpoint",
    "target_tensors",
    "trajectory_files",
]
