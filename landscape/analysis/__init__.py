"""The sharpness analysis of a checkpoint, as ``landscape sharpness`` runs it.

Above :mod:`landscape.hessian` (the numerics) and :mod:`landscape.measures` (sharpness beyond the
Hessian): :func:`sharpness` runs the stages a :class:`SharpnessOptions` asks for (top-k, trace,
density, per layer, per block, per batch, measures), each resumable (``stages``), and returns a
:class:`SharpnessResult`; ``pyhessian_backend`` runs the same stages with PyHessian's algorithms.
``result_file`` is the one writer and reader of ``sharpness.json`` (:class:`SharpnessFile`: the result
with the checkpoint, sample and settings it was made from), for the CLI, the demo, ``landscape
compare`` and a notebook alike.
"""

from landscape.analysis.options import SharpnessOptions
from landscape.analysis.pipeline import sharpness
from landscape.analysis.result import SharpnessResult
from landscape.analysis.result_file import (
    SharpnessFile,
    read_sharpness_file,
    sharpness_settings,
    write_sharpness_file,
)

__all__ = [
    "SharpnessFile",
    "SharpnessOptions",
    "SharpnessResult",
    "read_sharpness_file",
    "sharpness",
    "sharpness_settings",
    "write_sharpness_file",
]
