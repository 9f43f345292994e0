"""Reading the run folders that ``landscape train`` writes (``config.json``, ``metrics.csv``, ``steps.csv``).

Every file that cannot be read, or holds a value that is not a number where one belongs, is a
``ResultFileError`` naming the file and the line.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from landscape.errors import ResultFileError
from landscape.optim.decompose import STAT_KEYS
from landscape.runs.sharpness import use_stored_sharpness
from landscape.runs.summary import EARLY_LATE_FRACTION, RunSummary


def _read_rows(path: Path) -> list[dict[str, str]]:
    try:
        with open(path, newline="") as fh:
            return list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ResultFileError(
            f"cannot read {str(path)!r} ({exc}); is it a file written by 'landscape train'?"
        ) from None


def _int_column(rows: list[dict[str, str]], column: str, path: Path, first_line: int = 2) -> list[int]:
    """The integer column of a CSV, refusing a value that is not a whole number (naming the file).

    ``first_line`` is the file line of ``rows[0]`` (line 1 is the header).
    """
    out = []
    for i, r in enumerate(rows, start=first_line):
        v = _num(r.get(column))
        if not (math.isfinite(v) and v == int(v)):
            raise ResultFileError(
                f"{str(path)!r} line {i}: {column}={r.get(column)!r} is not a whole number; the file is "
                "damaged (rerun 'landscape train' or repair the file)"
            )
        out.append(int(v))
    return out


def _float_cell(row: dict[str, str], column: str, path: Path, line: int) -> float:
    """A number of a CSV row (empty or absent: NaN), refusing text that is not a number."""
    v = row.get(column)
    if v in (None, ""):
        return float("nan")
    try:
        return float(v)
    except ValueError:
        raise ResultFileError(
            f"{str(path)!r} line {line}: {column}={v!r} is not a number; the file is damaged "
            "(rerun 'landscape train' or repair the file)"
        ) from None


def _num(v: str | None) -> float:
    try:
        return float(v) if v not in (None, "") else float("nan")
    except ValueError:
        return float("nan")


def _means(rows: list[dict[str, str]]) -> dict[str, float]:
    out = {}
    for key in STAT_KEYS:
        vals = [_num(r.get(key)) for r in rows]
        vals = [v for v in vals if math.isfinite(v)]
        if vals:
            out[key] = float(np.mean(vals))
    return out


def is_run_dir(path: Path) -> bool:
    """Whether ``path`` is a run folder of ``landscape train`` (``config.json`` and ``metrics.csv``)."""
    return (path / "config.json").is_file() and (path / "metrics.csv").is_file()


def summarize_run(path: str | Path, *, early_late_fraction: float = EARLY_LATE_FRACTION) -> RunSummary:
    """Read one run folder of ``landscape train``.

    ``stats_early``/``stats_late`` are the means over the first/last ``early_late_fraction`` of the
    steps (at least one step each).
    """
    p = Path(path)
    if not is_run_dir(p):
        raise ResultFileError(
            f"{str(p)!r} is not a run folder of 'landscape train' (no config.json/metrics.csv)"
        )
    try:
        config = json.loads((p / "config.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ResultFileError(f"cannot read {str(p / 'config.json')!r}: {exc}") from None
    if not isinstance(config, dict):
        raise ResultFileError(f"{str(p / 'config.json')!r} is not a JSON object written by 'landscape train'")
    epochs = _read_rows(p / "metrics.csv")
    steps = _read_rows(p / "steps.csv") if (p / "steps.csv").is_file() else []
    if not epochs:
        raise ResultFileError(f"run folder {str(p)!r} has an empty metrics.csv")
    missing = [c for c in ("epoch", "step") if c not in epochs[0]] + [
        c for c in ("epoch",) if steps and c not in steps[0]
    ]
    if missing:
        raise ResultFileError(
            f"run folder {str(p)!r}: metrics.csv/steps.csv lack the column(s) {', '.join(missing)}"
        )
    last = epochs[-1]
    last_line = len(epochs) + 1
    last_epoch = _int_column([last], "epoch", p / "metrics.csv", last_line)[0]
    last_step = _int_column([last], "step", p / "metrics.csv", last_line)[0]
    final = {
        k: _float_cell(last, k, p / "metrics.csv", last_line)
        for k in ("train_loss", "train_accuracy", "test_loss", "test_accuracy")
    }
    step_epochs = _int_column(steps, "epoch", p / "steps.csv")
    n = len(steps)
    k = max(1, int(round(early_late_fraction * n))) if n else 0
    by_epoch: dict[str, list[float]] = {"epoch": []}
    for key in STAT_KEYS:
        by_epoch[key] = []
    for e in sorted(set(step_epochs)):
        rows = [r for r, re in zip(steps, step_epochs) if re == e]
        m = _means(rows)
        if m:
            by_epoch["epoch"].append(float(e))
            for key in STAT_KEYS:
                by_epoch[key].append(m.get(key, float("nan")))
    summary = RunSummary(
        name=p.name,
        path=str(p),
        optimizer=str(config.get("optimizer")),
        rho=config.get("rho"),
        decomposition=(config.get("optimizer_kwargs") or {}).get("decomposition"),
        epochs=last_epoch,
        steps=last_step,
        **final,
        stats_mean=_means(steps),
        stats_early=_means(steps[:k]) if n else {},
        stats_late=_means(steps[-k:]) if n else {},
        epoch_stats=by_epoch if by_epoch["epoch"] else {},
    )
    use_stored_sharpness(summary, p)
    return summary
