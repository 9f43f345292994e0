"""The sharpness analysis of a checkpoint, as ``landscape sharpness`` runs it.

Above :mod:`landscape.hessian` (the numerics) and :mod:`landscape.measures` (sharpness beyond the
Hessian): :func:`sharpness` runs the stages a :class:`SharpnessOptions` asks for (top-k, trace,
density, per layer, per batch, measures), each resumable (``stages``), and returns a
:class:`SharpnessResult`; ``pyhessian_backend`` runs the same stages with PyHessian's algorithms.
"""

from landscape.analysis.options import SharpnessOptions
from landscape.analysis.pipeline import sharpness
from landscape.analysis.result import SharpnessResult

__all__ = ["SharpnessOptions", "SharpnessResult", "sharpness"]
