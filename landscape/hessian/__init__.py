"""Hessian spectra of an objective: HVP operator, Lanczos, power iteration, trace, density.

Algorithms are plain functions over a linear operator (anything with ``.shape`` and ``@``);
:class:`HessianOperator` turns an :class:`~landscape.objective.core.Objective` into one. Modules are named
for what they hold, never for a function they export, so ``import landscape.hessian.krylov`` always
gives the module:

* ``operator``: :class:`HessianOperator` (HVPs over the data); ``krylov``: :func:`lanczos`;
  ``block_krylov``: :func:`block_lanczos` (products in blocks, one data pass per block);
  ``power``: :func:`power_iteration`; ``eigen``: :func:`top_eigenpairs`.
* ``trace_estimation``: :func:`trace` by name, over ``trace_hutchinson``, ``trace_hutchpp`` and
  ``trace_xtrace`` (one estimator each; ``trace_common`` holds what they share).
* ``spectral_density``: :func:`slq`; ``layer_blocks``: :func:`per_layer`; ``per_batch``:
  :func:`per_batch_protocol`.
* ``precond``: Adam's preconditioned operator P^-1 H; ``bn_fold``: eval-mode batch norm folded
  into the layer before it for products; ``testing``: dense references to check operators against.

The ``sharpness`` command's pipeline (options, stages, result file) is :mod:`landscape.analysis`,
above this package and :mod:`landscape.measures`.
"""

from landscape.hessian.block_krylov import block_lanczos
from landscape.hessian.eigen import top_eigenpairs
from landscape.hessian.krylov import lanczos
from landscape.hessian.layer_blocks import per_layer
from landscape.hessian.operator import HessianOperator
from landscape.hessian.per_batch import per_batch_protocol
from landscape.hessian.power import power_iteration
from landscape.hessian.results import (
    DensityResult,
    EigenResult,
    LayerEntry,
    PerBatchResult,
    PerLayerResult,
    TraceResult,
)
from landscape.hessian.spectral_density import slq
from landscape.hessian.trace_estimation import trace
from landscape.hessian.trace_hutchinson import hutchinson
from landscape.hessian.trace_hutchpp import hutchpp
from landscape.hessian.trace_xtrace import xtrace

__all__ = [
    "DensityResult",
    "EigenResult",
    "HessianOperator",
    "LayerEntry",
    "PerBatchResult",
    "PerLayerResult",
    "TraceResult",
    "block_lanczos",
    "hutchinson",
    "hutchpp",
    "lanczos",
    "per_batch_protocol",
    "per_layer",
    "power_iteration",
    "slq",
    "top_eigenpairs",
    "trace",
    "xtrace",
]
