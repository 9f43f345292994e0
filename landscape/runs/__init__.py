"""Runs of ``landscape train`` after the fact: reading run folders and comparing them.

* :mod:`landscape.runs.folder`: one run folder read into a :class:`RunSummary`;
* :mod:`landscape.runs.sharpness`: ``lambda_max`` of a run's final checkpoint (stored or computed);
* :mod:`landscape.runs.compare`: every run under a folder, side by side (:class:`Comparison`);
* :mod:`landscape.runs.grouping` and :mod:`landscape.runs.stats`: groups of seeds, their statistics
  and paired differences;
* :mod:`landscape.runs.evaluation`: the ``evaluation.json`` writer and reader.
"""

from landscape.runs.compare import Comparison, compare_runs
from landscape.runs.folder import is_run_dir, summarize_run
from landscape.runs.sharpness import SHARPNESS_FILES
from landscape.runs.summary import EARLY_LATE_FRACTION, RunSummary

__all__ = [
    "EARLY_LATE_FRACTION",
    "SHARPNESS_FILES",
    "Comparison",
    "RunSummary",
    "compare_runs",
    "is_run_dir",
    "summarize_run",
]
