"""Sharpness measures of a run's final checkpoint for the comparison: stored ones that fit, or computed.

The measures (worst/average-case sharpness, Keskar, PAC-Bayes, ...; :mod:`landscape.measures`) are
taken on the same fixed sample as ``lambda_max``. A ``sharpness.json`` left in the run by
``landscape sharpness RUN/final.pt --measure ... -o RUN`` stands for a measure only when it was
computed from the very weights of ``final.pt`` (digest), on that sample (size and seed), in the asked
precision, and with the same settings of that measure (the options its registry entry reads:
:func:`~landscape.measures.measure_settings`; an option another measure reads does not matter);
otherwise the measure is computed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from landscape.analysis.result_file import SharpnessFile
from landscape.errors import CheckpointError
from landscape.io.digest import weights_digest
from landscape.measures import measure_settings
from landscape.runs.sharpness import final_weights, stored_files, stored_sample_problem
from landscape.runs.summary import RunSummary


def use_stored_measures(
    summary: RunSummary,
    run: Path,
    names: Sequence[str],
    options: dict[str, Any],
    *,
    samples: int,
    seed: int,
    dtype: str | None = None,
) -> list[str]:
    """Fill ``summary.measures`` with the measures of ``names`` a fitting ``sharpness.json`` holds.

    Args:
        summary: the run's row (its ``measures`` are filled in place).
        run: the run folder.
        names: the measures wanted.
        options: ``MeasureOptions.to_dict()`` of the settings wanted (seed included).
        samples: size of the fixed training sample.
        seed: seed of that sample.
        dtype: ``'float32'``/``'float64'``, or ``None`` for any.

    Returns:
        The names still missing (to compute).
    """
    missing = list(names)
    candidates = [(path, r) for path, r in stored_files(run) if isinstance(r, SharpnessFile)]
    if not candidates or not (run / "final.pt").is_file():
        return missing
    try:
        digest, data_name = final_weights(run)
    except CheckpointError:
        return missing  # computing will report the checkpoint's problem
    for path, record in candidates:
        if not record.result.measures:
            continue
        if stored_sample_problem(record, digest, data_name, samples, seed, dtype) is not None:
            continue
        stored_options = (record.settings.get("measures") or {}).get("options")
        if not isinstance(stored_options, dict):
            continue
        for name in list(missing):
            if measure_settings(name, stored_options) != measure_settings(name, options):
                continue
            m = record.result.measures.get(name)
            if m is not None and not math.isnan(m.value):  # NaN: stored as null, not a value
                summary.measures[name] = {**m.to_dict(), "source": str(path)}
                missing.remove(name)
    return missing


def compute_run_measures(
    summary: RunSummary, names: Sequence[str], options: Any, loaded: tuple[Any, Any, Any]
) -> None:
    """Compute the measures ``names`` on the loaded objective of the run's ``final.pt`` and store them.

    Args:
        summary: the run's row (its ``measures`` are filled in place).
        names: the measures to compute.
        options: a :class:`~landscape.measures.MeasureOptions`.
        loaded: ``(objective, checkpoint, data spec)`` from :func:`landscape.runs.sharpness.final_objective`.
    """
    from landscape.measures import compute_measures

    objective, ckpt, spec = loaded
    results = compute_measures(objective, list(names), options)
    for name, result in results.items():
        summary.measures[name] = {
            **result.to_dict(),
            "source": "computed",
            "checkpoint_digest": weights_digest(ckpt.state_dict),
            "sample": {"subset": spec.subset, "seed": spec.seed, "split": spec.split},
        }
