"""Hessian spectra of an objective: HVP operator, Lanczos, power iteration, trace, density.

Algorithms are plain functions over a linear operator (anything with ``.shape`` and ``@``);
:class:`HessianOperator` turns an :class:`~landscape.objective.Objective` into one.
"""

from landscape.hessian.eigen import top_eigenpairs
from landscape.hessian.lanczos import lanczos
from landscape.hessian.operator import HessianOperator
from landscape.hessian.per_layer import per_layer
from landscape.hessian.power import power_iteration
from landscape.hessian.results import (
    DensityResult,
    EigenResult,
    LayerEntry,
    PerBatchResult,
    PerLayerResult,
    TraceResult,
)
from landscape.hessian.sharpness import SharpnessResult, per_batch_protocol, sharpness
from landscape.hessian.slq import slq
from landscape.hessian.trace import hutchinson, hutchpp, trace, xtrace

__all__ = [
    "DensityResult",
    "EigenResult",
    "HessianOperator",
    "LayerEntry",
    "PerBatchResult",
    "PerLayerResult",
    "SharpnessResult",
    "TraceResult",
    "hutchinson",
    "hutchpp",
    "lanczos",
    "per_batch_protocol",
    "per_layer",
    "power_iteration",
    "sharpness",
    "slq",
    "top_eigenpairs",
    "trace",
    "xtrace",
]
