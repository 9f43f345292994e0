"""Direction vs magnitude across runs: read run folders side by side (``landscape compare-magnitude``).

For each run made by ``landscape train`` (SGD, SAM, SAM-direction, SAM-magnitude, ...), collect the
final train/test loss and accuracy, the per-step statistics of SAM's update against SGD's
(``||g_SAM|| / ||g_SGD||``, their cosine, and the fraction of coordinates with ``|g_SAM_i| > |g_SGD_i|``,
as in the empirical SAM study, Luong 2024) early and late in training, and optionally the sharpness
``lambda_max`` of the final checkpoint on a fixed sample of the training set (Lanczos).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from landscape.errors import ConfigError, ResultFileError, check_positive
from landscape.io.atomic import atomic_write_json, atomic_write_text
from landscape.io.tables import csv_text
from landscape.runs.folder import is_run_dir, summarize_run
from landscape.runs.measures import compute_run_measures, use_stored_measures
from landscape.runs.sharpness import compute_lambda_max, final_objective, use_stored_sharpness
from landscape.runs.summary import EARLY_LATE_FRACTION, RunSummary


@dataclass
class Comparison:
    """All runs under a folder, ready to save and draw."""

    root: str
    runs: list[RunSummary]
    early_late_fraction: float = EARLY_LATE_FRACTION
    #: run folders not compared, by path: why (unfinished or diverged; see :func:`run_problem`)
    left_out: dict[str, str] = field(default_factory=dict)
    #: what the reader should know about the folder read (e.g. a run holding further runs)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "early_late_fraction": self.early_late_fraction,
            "runs": [asdict(r) for r in self.runs],
            "left_out": dict(self.left_out),
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Comparison:
        return cls(
            root=d["root"],
            runs=[RunSummary(**r) for r in d["runs"]],
            early_late_fraction=float(d.get("early_late_fraction", EARLY_LATE_FRACTION)),
            left_out=dict(d.get("left_out") or {}),
            warnings=list(d.get("warnings") or []),
        )

    def save(self, out_dir: str | Path) -> dict[str, Path]:
        """Write ``comparison.json`` (everything) and ``comparison.csv`` (the table), atomically."""
        out = Path(out_dir)
        paths = {"json": out / "comparison.json", "csv": out / "comparison.csv"}
        atomic_write_json(paths["json"], _finite(self.to_dict()))
        rows = [r.row() for r in self.runs]
        columns = list(dict.fromkeys(k for r in rows for k in r)) or ["run"]  # measures may differ by run
        atomic_write_text(paths["csv"], csv_text(rows, columns))
        return paths

    @classmethod
    def load(cls, path: str | Path) -> Comparison:
        p = Path(path)
        try:
            return cls.from_dict(json.loads(p.read_text()))
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ResultFileError(
                f"{str(p)!r} is not a comparison.json written by landscape: {exc}"
            ) from None


def _finite(obj: Any) -> Any:
    """NaN and infinities become ``None`` so the JSON is standard."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def compare_runs(
    root: str | Path,
    *,
    sharpness_samples: int | None = None,
    seed: int = 0,
    device: str = "auto",
    tol: float = 1e-4,
    early_late_fraction: float = EARLY_LATE_FRACTION,
    quiet: bool = True,
    dtype: torch.dtype | None = None,
    measures: Sequence[str] = (),
    measure_options: Any = None,
    include_unfinished: bool = False,
) -> Comparison:
    """Summarize every run folder directly under ``root`` (or ``root`` itself if it is one).

    Args:
        root: a folder of run folders.
        sharpness_samples: if given, compute ``lambda_max`` of each run's ``final.pt`` on this many
            training examples (fixed seeded subset) by Lanczos with relative residual ``tol``, unless
            a ``sharpness.json`` in the run holds exactly that (same weights digest, ``which='LA'``,
            subset, seed, training split, tolerance at least ``tol``). Without it, a ``sharpness.json``
            left by ``landscape sharpness RUN/final.pt -o RUN`` is used only if it was made from the
            run's final weights with ``which='LA'`` on its training set; otherwise the cell is empty
            and ``RunSummary.lambda_max_note`` says why. Where each value came from and its settings
            are kept in ``lambda_max_source`` and ``lambda_max_settings``.
        seed: seed of the subset and of the Lanczos start vector.
        device: where to compute ``lambda_max``.
        tol: Lanczos tolerance.
        early_late_fraction: share of steps averaged for the early and late statistics.
        quiet: no progress bar.
        dtype: precision of the ``lambda_max`` and measure computations (``None``: the checkpoint's);
            a stored result is used only if it was computed in this precision.
        measures: sharpness measures (:data:`landscape.measures.MEASURE_NAMES`) of each final
            checkpoint, on the same sample as ``lambda_max`` (needs ``sharpness_samples``), each read
            from a stored ``sharpness.json`` with the same weights, sample, precision and settings, or
            computed; in ``RunSummary.measures``.
        measure_options: their :class:`~landscape.measures.MeasureOptions` (default settings when
            ``None``); its seed is replaced by ``seed``.
        include_unfinished: also compare runs that :func:`run_problem` finds unfinished (no
            ``final.pt``, fewer epochs than their ``config.json`` asks) or diverged (a final train
            loss that is not finite); by default they are left out and listed in
            ``Comparison.left_out``, since averaging them in changes the groups silently.

    Raises:
        ConfigError: a bad setting, or ``measures`` without ``sharpness_samples``.
        ResultFileError: no run under ``root``, a damaged run folder, or every run left out.
    """
    if sharpness_samples is not None:
        check_positive("sharpness_samples", sharpness_samples)
    check_positive("tol", tol)
    names, options = _measure_settings(measures, measure_options, seed)
    if names and sharpness_samples is None:
        raise ConfigError(
            f"measures={','.join(names)} need sharpness_samples (the fixed sample they share with "
            "lambda_max), e.g. sharpness_samples=512"
        )
    dtype_text = None if dtype is None else str(dtype).removeprefix("torch.")
    base = Path(root)
    if not base.is_dir():
        raise ResultFileError(f"runs folder {str(base)!r} does not exist or is not a directory")
    dirs = [base] if is_run_dir(base) else sorted(d for d in base.iterdir() if d.is_dir() and is_run_dir(d))
    if not dirs:
        raise ResultFileError(f"no run folders of 'landscape train' under {str(base)!r}")
    runs = [summarize_run(d, early_late_fraction=early_late_fraction) for d in dirs]
    runs, left_out = _finished_runs(runs, include_unfinished, base)
    comparison = Comparison(
        root=str(base), runs=runs, early_late_fraction=early_late_fraction, left_out=left_out
    )
    if is_run_dir(base):
        comparison.warnings += nested_runs_warning(base)
    if sharpness_samples is not None:
        for run in runs:
            run.lambda_max, run.lambda_max_samples, run.lambda_max_source = None, None, None
            run.lambda_max_settings = None
            path = Path(run.path)
            stored = use_stored_sharpness(
                run, path, samples=sharpness_samples, seed=seed, tol=tol, dtype=dtype_text
            )
            missing = (
                use_stored_measures(
                    run,
                    path,
                    names,
                    options.to_dict(),
                    samples=sharpness_samples,
                    seed=seed,
                    dtype=dtype_text,
                )
                if names
                else []
            )
            if not (stored and not missing):
                _compute(run, stored, missing, options, sharpness_samples, seed, device, tol, quiet, dtype)
            run.measures = {n: run.measures[n] for n in names if n in run.measures}
    return comparison


def _finished_runs(
    runs: list[RunSummary], include_unfinished: bool, base: Path
) -> tuple[list[RunSummary], dict[str, str]]:
    """The runs to compare and those left out (path: why); refuses leaving out every run."""
    if include_unfinished:
        return runs, {}
    problems = {r.path: run_problem(r) for r in runs}
    left_out = {path: why for path, why in problems.items() if why is not None}
    kept = [r for r in runs if problems[r.path] is None]
    if not kept:
        raise ResultFileError(
            f"all {len(runs)} run(s) under {str(base)!r} are unfinished or diverged ("
            + "; ".join(f"{Path(p).name}: {why}" for p, why in left_out.items())
            + "); rerun them, or pass include_unfinished=True to compare them anyway"
        )
    return kept, left_out


def run_problem(run: RunSummary) -> str | None:
    """Why ``run`` is not a finished, converged run (``None`` if it is): no ``final.pt``, fewer
    epochs in ``metrics.csv`` than its ``config.json`` asks (a killed or failed run), or a final
    train loss that is not finite (diverged)."""
    path = Path(run.path)
    if not (path / "final.pt").is_file():
        return "no final.pt (the run did not finish)"
    asked = _asked_epochs(path)
    if asked is not None and run.epochs < asked:
        return f"{run.epochs} of {asked} epochs in metrics.csv (the run did not finish)"
    if not math.isfinite(run.train_loss):
        return f"final train loss {run.train_loss} is not finite (the run diverged)"
    return None


def _asked_epochs(path: Path) -> int | None:
    try:
        epochs = json.loads((path / "config.json").read_text()).get("epochs")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return None
    return epochs if isinstance(epochs, int) and not isinstance(epochs, bool) else None


def nested_runs_warning(base: Path) -> list[str]:
    """A warning when the run folder ``base`` also holds run folders (a sweep trained over by a run):
    only ``base`` itself is compared."""
    inner = sorted(d.name for d in base.iterdir() if d.is_dir() and is_run_dir(d))
    if not inner:
        return []
    shown = ", ".join(inner[:3]) + (", ..." if len(inner) > 3 else "")
    return [
        f"{str(base)!r} is itself a run and also holds {len(inner)} run folder(s) ({shown}); only "
        f"{base.name!r} is compared: move it out (or train into a new folder) to compare the others"
    ]


def _compute(
    run: RunSummary,
    stored: bool,
    missing: list[str],
    options: Any,
    samples: int,
    seed: int,
    device: str,
    tol: float,
    quiet: bool,
    dtype: torch.dtype | None,
) -> None:
    """lambda_max (unless ``stored``) and the ``missing`` measures, on one load of the final checkpoint:
    the same sample (size and seed) and precision for both."""
    loaded = final_objective(run, samples=samples, seed=seed, device=device, dtype=dtype)
    if not stored:
        run.lambda_max_note = None  # recomputed: the stored file's problem no longer matters
        compute_lambda_max(
            run, samples=samples, seed=seed, device=device, tol=tol, quiet=quiet, loaded=loaded
        )
    if missing:
        compute_run_measures(run, missing, options, loaded)


def _measure_settings(measures: Sequence[str] | str, options: Any, seed: int) -> tuple[list[str], Any]:
    """The measure names, checked, and their options (seeded with ``seed``), validated before any work."""
    if not measures:
        return [], None
    from landscape.measures import MeasureOptions, parse_measure_names

    opts = replace(options or MeasureOptions(), seed=seed)
    opts.validate()
    return parse_measure_names(measures), opts
