"""Sharpness measures beyond the Hessian spectrum, each a function ``(objective, options) -> MeasureResult``.

``worst`` and ``average`` (adaptive) sharpness, ``random-max`` (the seed documents' reference),
``keskar``, ``pac-bayes``, ``fisher-rao``, ``relative-flatness`` and ``overlap``; definitions and
papers in each module. :func:`compute_measures` runs several by name with one :class:`MeasureOptions`;
the registry (:mod:`landscape.measures.registry`) names them, the options each reads and its label.
"""

from landscape.measures.average import average_sharpness
from landscape.measures.common import MeasureResult
from landscape.measures.dispatch import compute_measures, parse_measure_names
from landscape.measures.fisher_rao import fisher_rao_norm
from landscape.measures.keskar import keskar_sharpness
from landscape.measures.options import MeasureOptions
from landscape.measures.overlap import gradient_overlap
from landscape.measures.pac_bayes import pac_bayes_sharpness
from landscape.measures.random_max import random_max_sharpness
from landscape.measures.registry import (
    MEASURE_NAMES,
    Measure,
    measure_label,
    measure_names,
    measure_settings,
    register_measure,
    shared_options,
)
from landscape.measures.relative import relative_flatness
from landscape.measures.worst import worst_sharpness

__all__ = [
    "MEASURE_NAMES",
    "Measure",
    "MeasureOptions",
    "MeasureResult",
    "average_sharpness",
    "compute_measures",
    "fisher_rao_norm",
    "gradient_overlap",
    "keskar_sharpness",
    "measure_label",
    "measure_names",
    "measure_settings",
    "pac_bayes_sharpness",
    "parse_measure_names",
    "random_max_sharpness",
    "register_measure",
    "relative_flatness",
    "shared_options",
    "worst_sharpness",
]
