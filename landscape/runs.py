"""Direction vs magnitude across runs: read run folders side by side (``landscape compare-magnitude``).

For each run made by ``landscape train`` (SGD, SAM, SAM-direction, SAM-magnitude, ...), collect the
final train/test loss and accuracy, the per-step statistics of SAM's update against SGD's
(``||g_SAM|| / ||g_SGD||``, their cosine, and the fraction of coordinates with ``|g_SAM_i| > |g_SGD_i|``,
as in the empirical SAM study, Luong 2024) early and late in training, and optionally the sharpness
``lambda_max`` of the final checkpoint on a fixed sample of the training set (Lanczos).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from landscape.decompose import STAT_KEYS
from landscape.errors import ResultFileError
from landscape.io.atomic import atomic_write_json, atomic_write_text

EARLY_LATE_FRACTION = 0.1


@dataclass
class RunSummary:
    """One run's row of the comparison."""

    name: str
    path: str
    optimizer: str
    rho: float | None
    decomposition: str | None
    epochs: int
    steps: int
    train_loss: float
    train_accuracy: float
    test_loss: float
    test_accuracy: float
    stats_mean: dict[str, float] = field(default_factory=dict)
    stats_early: dict[str, float] = field(default_factory=dict)
    stats_late: dict[str, float] = field(default_factory=dict)
    lambda_max: float | None = None
    lambda_max_samples: int | None = None
    lambda_max_source: str | None = None
    epoch_stats: dict[str, list[float]] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        """Flat row for the CSV table."""
        r: dict[str, Any] = {
            "run": self.name,
            "optimizer": self.optimizer,
            "rho": self.rho,
            "decomposition": self.decomposition,
            "epochs": self.epochs,
            "steps": self.steps,
            "train_loss": self.train_loss,
            "train_accuracy": self.train_accuracy,
            "test_loss": self.test_loss,
            "test_accuracy": self.test_accuracy,
            "lambda_max": self.lambda_max,
        }
        for key in STAT_KEYS:
            r[f"{key}_mean"] = self.stats_mean.get(key)
            r[f"{key}_early"] = self.stats_early.get(key)
            r[f"{key}_late"] = self.stats_late.get(key)
        return r


@dataclass
class Comparison:
    """All runs under a folder, ready to save and draw."""

    root: str
    runs: list[RunSummary]
    early_late_fraction: float = EARLY_LATE_FRACTION

    def to_dict(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "early_late_fraction": self.early_late_fraction,
            "runs": [asdict(r) for r in self.runs],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Comparison:
        return cls(
            root=d["root"],
            runs=[RunSummary(**r) for r in d["runs"]],
            early_late_fraction=float(d.get("early_late_fraction", EARLY_LATE_FRACTION)),
        )

    def save(self, out_dir: str | Path) -> dict[str, Path]:
        """Write ``comparison.json`` (everything) and ``comparison.csv`` (the table), atomically."""
        out = Path(out_dir)
        paths = {"json": out / "comparison.json", "csv": out / "comparison.csv"}
        atomic_write_json(paths["json"], _finite(self.to_dict()))
        rows = [r.row() for r in self.runs]
        cols = list(rows[0]) if rows else ["run"]
        lines = [",".join(cols)]
        for r in rows:
            lines.append(",".join("" if r[c] is None else str(r[c]) for c in cols))
        atomic_write_text(paths["csv"], "\n".join(lines) + "\n")
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


def _read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


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
        epochs = _read_rows(p / "metrics.csv")
        steps = _read_rows(p / "steps.csv") if (p / "steps.csv").is_file() else []
    except (OSError, json.JSONDecodeError, csv.Error) as exc:
        raise ResultFileError(f"cannot read run folder {str(p)!r}: {exc}") from None
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
    n = len(steps)
    k = max(1, int(round(early_late_fraction * n))) if n else 0
    by_epoch: dict[str, list[float]] = {"epoch": []}
    for key in STAT_KEYS:
        by_epoch[key] = []
    for e in sorted({int(_num(r["epoch"])) for r in steps}):
        rows = [r for r in steps if int(_num(r["epoch"])) == e]
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
        epochs=int(_num(last["epoch"])),
        steps=int(_num(last["step"])),
        train_loss=_num(last.get("train_loss")),
        train_accuracy=_num(last.get("train_accuracy")),
        test_loss=_num(last.get("test_loss")),
        test_accuracy=_num(last.get("test_accuracy")),
        stats_mean=_means(steps),
        stats_early=_means(steps[:k]) if n else {},
        stats_late=_means(steps[-k:]) if n else {},
        epoch_stats=by_epoch if by_epoch["epoch"] else {},
    )
    for candidate in (p / "sharpness.json", p / "sharpness" / "sharpness.json"):
        if candidate.is_file():
            try:
                s = json.loads(candidate.read_text())
                summary.lambda_max = float(s["eigenvalues"][0])
                summary.lambda_max_samples = int(s["samples"]) if s.get("samples") is not None else None
                summary.lambda_max_source = str(candidate)
            except (OSError, json.JSONDecodeError, KeyError, IndexError, TypeError, ValueError):
                pass
            break
    return summary


def compare_runs(
    root: str | Path,
    *,
    sharpness_samples: int | None = None,
    seed: int = 0,
    device: str = "auto",
    tol: float = 1e-4,
    early_late_fraction: float = EARLY_LATE_FRACTION,
    quiet: bool = True,
) -> Comparison:
    """Summarize every run folder directly under ``root`` (or ``root`` itself if it is one).

    Args:
        root: a folder of run folders.
        sharpness_samples: if given, compute ``lambda_max`` of each run's ``final.pt`` on this many
            training examples (fixed seeded subset) by Lanczos with relative residual ``tol``; a
            ``sharpness.json`` left in the run by ``landscape sharpness -o RUN`` is used otherwise.
        seed: seed of the subset and of the Lanczos start vector.
        device: where to compute ``lambda_max``.
        tol: Lanczos tolerance.
        early_late_fraction: share of steps averaged for the early and late statistics.
        quiet: no progress bar.
    """
    base = Path(root)
    if not base.is_dir():
        raise ResultFileError(f"runs folder {str(base)!r} does not exist or is not a directory")
    dirs = [base] if is_run_dir(base) else sorted(d for d in base.iterdir() if d.is_dir() and is_run_dir(d))
    if not dirs:
        raise ResultFileError(f"no run folders of 'landscape train' under {str(base)!r}")
    runs = [summarize_run(d, early_late_fraction=early_late_fraction) for d in dirs]
    if sharpness_samples is not None:
        from landscape.hessian import top_eigenpairs
        from landscape.io.loading import objective_from_checkpoint

        for run in runs:
            objective, _, _ = objective_from_checkpoint(
                Path(run.path) / "final.pt",
                samples=sharpness_samples,
                seed=seed,
                device=device,
                split="train",
            )
            res = top_eigenpairs(objective, 1, which="LA", tol=tol, seed=seed, quiet=quiet)
            run.lambda_max = float(res.eigenvalues[0])
            run.lambda_max_samples = objective.num_samples
            run.lambda_max_source = f"lanczos(tol={tol}, seed={seed})"
    return Comparison(root=str(base), runs=runs, early_late_fraction=early_late_fraction)
