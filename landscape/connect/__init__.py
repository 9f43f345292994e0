"""Mode connectivity: linear paths and barriers, Bezier and polychain curves, weight matching.

``connect_checkpoints`` is what ``landscape connect`` runs; the pieces are usable on their own.
"""

from landscape.connect.align import (
    AlignmentError,
    align_models,
    apply_permutations,
    permutation_spec,
    weight_matching,
)
from landscape.connect.api import connect_checkpoints
from landscape.connect.curves import CURVES, curve_coefficients, midpoint, train_curve
from landscape.connect.paths import evaluate_path, linear_path
from landscape.connect.result import ConnectResult, PathResult, barrier

__all__ = [
    "CURVES",
    "AlignmentError",
    "ConnectResult",
    "PathResult",
    "align_models",
    "apply_permutations",
    "barrier",
    "connect_checkpoints",
    "curve_coefficients",
    "evaluate_path",
    "linear_path",
    "midpoint",
    "permutation_spec",
    "train_curve",
    "weight_matching",
]
