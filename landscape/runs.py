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
import torch

from landscape.decompose import STAT_KEYS
from landscape.errors import CheckpointError, ResultFileError, check_positive
from landscape.io.atomic import atomic_write_json, atomic_write_text
from landscape.io.digest import tensors_digest

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
    lambda_max_settings: dict[str, Any] | None = None
    lambda_max_note: str | None = None
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
            "lambda_max_source": self.lambda_max_source,
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


def weights_digest(state_dict: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a checkpoint's tensors as stored (names, shapes, dtypes, bytes): which weights a
    result was computed from, whatever device or dtype it was computed in."""
    return tensors_digest(state_dict.items())


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
    _use_stored_sharpness(summary, p)
    return summary


SHARPNESS_FILES = ("sharpness.json", "sharpness/sharpness.json")


def _stored_sharpness_problem(
    doc: Any, digest: str, data_name: str | None, samples: int | None, seed: int | None, tol: float | None
) -> str | None:
    """Why a stored ``sharpness.json`` cannot stand for lambda_max of the final checkpoint, or ``None``.

    It must be of the same weights (digest), ``which='LA'`` (the top eigenvalue, not the bottom),
    the landscape backend with batch norm in eval mode, on the training split of the run's own data;
    with ``samples``/``seed``/``tol`` given (a requested recomputation) also on that sample and at
    least that tolerance.
    """
    if not isinstance(doc, dict) or not doc.get("eigenvalues"):
        return "it holds no eigenvalues"
    if doc.get("checkpoint_digest") is None:
        return "it has no checkpoint digest (written by an older landscape)"
    if doc["checkpoint_digest"] != digest:
        return "it was computed for other weights (an earlier checkpoint or a previous run)"
    if doc.get("which") != "LA":
        return f"it holds which={doc.get('which')!r} eigenvalues, not the largest ('LA')"
    if doc.get("backend", "landscape") != "landscape" or doc.get("bn_mode") != "eval":
        return f"it was computed with backend={doc.get('backend')!r}, bn_mode={doc.get('bn_mode')!r}"
    data = doc.get("data") or {}
    if data.get("split") != "train" or (data_name is not None and data.get("name") != data_name):
        return f"it was computed on data {data.get('name')!r} split {data.get('split')!r}, not the run's training set"
    if samples is not None and (data.get("subset") != samples or data.get("seed") != seed):
        return (
            f"its sample (subset={data.get('subset')!r}, seed={data.get('seed')!r}) is not the one asked "
            f"for (subset={samples}, seed={seed})"
        )
    if tol is not None and not (doc.get("tol") is not None and float(doc["tol"]) <= tol):
        return f"its tolerance {doc.get('tol')!r} is looser than tol={tol}"
    return None


def _use_stored_sharpness(
    summary: RunSummary,
    run: Path,
    *,
    samples: int | None = None,
    seed: int | None = None,
    tol: float | None = None,
) -> bool:
    """Fill ``summary.lambda_max`` from a ``sharpness.json`` in ``run`` that fits its final checkpoint.

    Returns whether one was used; otherwise ``summary.lambda_max_note`` says why not (``None`` when
    the run holds no sharpness.json).
    """
    candidates = [run / name for name in SHARPNESS_FILES if (run / name).is_file()]
    if not candidates:
        return False
    final = run / "final.pt"
    if not final.is_file():
        summary.lambda_max_note = f"run {summary.name!r}: sharpness.json not used, the run has no final.pt"
        return False
    from landscape.io.checkpoints import load_checkpoint

    try:
        ckpt = load_checkpoint(final)
    except CheckpointError as exc:
        summary.lambda_max_note = f"run {summary.name!r}: sharpness.json not used, {exc}"
        return False
    digest = weights_digest(ckpt.state_dict)
    data_name = ckpt.data_spec.name if ckpt.data_spec is not None else None
    reasons = []
    for path in candidates:
        try:
            doc = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            reasons.append(f"{str(path)!r} is unreadable ({exc})")
            continue
        problem = _stored_sharpness_problem(doc, digest, data_name, samples, seed, tol)
        if problem is not None:
            reasons.append(f"{str(path)!r}: {problem}")
            continue
        data = doc.get("data") or {}
        summary.lambda_max = float(max(doc["eigenvalues"]))
        summary.lambda_max_samples = int(doc["samples"]) if doc.get("samples") is not None else None
        summary.lambda_max_source = str(path)
        summary.lambda_max_settings = {
            "checkpoint_digest": digest,
            "which": "LA",
            "samples": summary.lambda_max_samples,
            "subset": data.get("subset"),
            "sample_seed": data.get("seed"),
            "split": data.get("split"),
            "tol": doc.get("tol"),
            "converged": bool(doc["converged"][0]) if doc.get("converged") else None,
            "dtype": doc.get("dtype"),
            "bn_mode": doc.get("bn_mode"),
        }
        summary.lambda_max_note = None
        return True
    summary.lambda_max_note = f"run {summary.name!r}: lambda_max left empty, " + "; ".join(reasons)
    return False


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
    """
    if sharpness_samples is not None:
        check_positive("sharpness_samples", sharpness_samples)
    check_positive("tol", tol)
    base = Path(root)
    if not base.is_dir():
        raise ResultFileError(f"runs folder {str(base)!r} does not exist or is not a directory")
    dirs = [base] if is_run_dir(base) else sorted(d for d in base.iterdir() if d.is_dir() and is_run_dir(d))
    if not dirs:
        raise ResultFileError(f"no run folders of 'landscape train' under {str(base)!r}")
    runs = [summarize_run(d, early_late_fraction=early_late_fraction) for d in dirs]
    if sharpness_samples is not None:
        from landscape.hessian import top_eigenpairs
        from landscape.loading import objective_from_checkpoint

        for run in runs:
            run.lambda_max, run.lambda_max_samples, run.lambda_max_source = None, None, None
            run.lambda_max_settings = None
            if _use_stored_sharpness(run, Path(run.path), samples=sharpness_samples, seed=seed, tol=tol):
                continue
            run.lambda_max_note = None  # recomputed below: the stored file's problem no longer matters
            objective, ckpt, spec = objective_from_checkpoint(
                Path(run.path) / "final.pt",
                samples=sharpness_samples,
                seed=seed,
                device=device,
                split="train",
            )
            res = top_eigenpairs(objective, 1, which="LA", tol=tol, seed=seed, quiet=quiet)
            run.lambda_max = float(res.eigenvalues[0])
            run.lambda_max_samples = objective.num_samples
            run.lambda_max_source = "computed"
            run.lambda_max_settings = {
                "checkpoint_digest": weights_digest(ckpt.state_dict),
                "which": "LA",
                "samples": objective.num_samples,
                "subset": spec.subset,
                "sample_seed": spec.seed,
                "split": spec.split,
                "tol": tol,
                "converged": bool(res.converged[0]),
                "dtype": str(objective.dtype).removeprefix("torch."),
                "bn_mode": objective.bn_mode,
            }
    return Comparison(root=str(base), runs=runs, early_late_fraction=early_late_fraction)
