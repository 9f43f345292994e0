"""Group runs that differ only by seed, summarize each group, and compare groups by paired differences.

The per-run rows come from :func:`landscape.runs.compare_runs` (final train/test loss and accuracy,
``lambda_max`` and the direction-vs-magnitude step statistics early and late in training); this module
adds what a claim across seeds needs:

* a **group** is the set of runs whose ``config.json`` are equal once ``seed`` is removed (and the data
  sample's seed, which ``landscape train`` ties to it); a folder with checkpoints but no ``config.json``
  (made by another tool) is a group of its own;
* per group and metric: ``n``, ``<metric>_mean``, ``_std`` (ddof 1), ``_ci95_low``, ``_ci95_high``
  (Student t, :mod:`landscape.runs.stats`) -> ``groups.csv``;
* per group against a baseline group (``baseline="sgd"``): the differences ``group - baseline`` of the
  runs with the same seed (same initialization and data order) with their t-interval -> ``paired.csv``;
* a Markdown table in the seed study's layout: one row per method, one column per ``rho``, cells
  ``mean ± std`` (Luong 2024, Table 1).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from landscape.analysis.result_file import SHARPNESS_FILE, SharpnessFile, read_sharpness_file
from landscape.errors import ConfigError, ResultFileError
from landscape.io.atomic import atomic_write_json, atomic_write_text
from landscape.io.tables import csv_text
from landscape.optim.decompose import STAT_KEYS
from landscape.runs import Comparison, RunSummary, compare_runs, is_run_dir
from landscape.runs.stats import CONFIDENCE, SUMMARY_FIELDS, Summary, paired_differences, summarize

#: Metrics of every run, in the column order of ``groups.csv`` (absent ones are left out).
BASE_METRICS = (
    "test_accuracy",
    "test_loss",
    "train_accuracy",
    "train_loss",
    "lambda_max",
    "trace",
    *(f"{k}_{when}" for k in STAT_KEYS for when in ("early", "late")),
)
#: Printed names of the optimizers in labels and tables.
METHOD_NAMES = {
    "sgd": "SGD",
    "adam": "Adam",
    "adamw": "AdamW",
    "sam": "SAM",
    "asam": "ASAM",
    "sam-direction": "SAM-direction",
    "sam-magnitude": "SAM-magnitude",
}
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")
#: The columns of ``paired.csv``, whether it has lines or not.
PAIRED_COLUMNS = ("group", "baseline", "metric", "seeds", "n", *SUMMARY_FIELDS)
#: ``baseline`` meaning "the SGD group when there is exactly one, else no paired differences".
AUTO_BASELINE = "auto"


@dataclass
class RunRecord:
    """One run as grouped: where it is, its group, its seed and its metrics (NaN where absent)."""

    run: str
    path: str
    group: str
    seed: int | None
    optimizer: str | None
    decomposition: str | None
    rho: float | None
    metrics: dict[str, float] = field(default_factory=dict)
    #: per-epoch means of the step statistics (``{"epoch": [...], "grad_norm_ratio": [...], ...}``)
    curves: dict[str, list[float]] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        """Flat row for ``runs.csv``."""
        return {
            "run": self.run,
            "group": self.group,
            "seed": self.seed,
            "optimizer": self.optimizer,
            "decomposition": self.decomposition,
            "rho": self.rho,
            **self.metrics,
        }


@dataclass
class GroupSummary:
    """One group of seeds: its label, what it ran, its runs and a :class:`Summary` per metric."""

    group: str
    optimizer: str | None
    decomposition: str | None
    rho: float | None
    runs: list[str]
    seeds: list[int]
    stats: dict[str, Summary]

    @property
    def n(self) -> int:
        return len(self.runs)

    def row(self, metrics: Sequence[str]) -> dict[str, Any]:
        """``group, optimizer, decomposition, rho, n`` then ``<metric>_n/_mean/_std/_ci95_low/_ci95_high``
        (``<metric>_n``: the finite values the mean used, fewer than ``n`` where some runs lack it)."""
        r: dict[str, Any] = {
            "group": self.group,
            "optimizer": self.optimizer,
            "decomposition": self.decomposition,
            "rho": self.rho,
            "n": self.n,
            "seeds": " ".join(map(str, self.seeds)),
        }
        for m in metrics:
            s = self.stats.get(m, summarize([]))
            r[f"{m}_n"] = s.n
            r.update({f"{m}_{f}": getattr(s, f) for f in SUMMARY_FIELDS})
        return r


@dataclass
class PairedDifference:
    """``group - baseline`` of one metric over the seeds both groups have."""

    group: str
    baseline: str
    metric: str
    seeds: list[int]
    stats: Summary

    def row(self) -> dict[str, Any]:
        """One line of ``paired.csv``, in the order of :data:`PAIRED_COLUMNS`."""
        cells = {
            "group": self.group,
            "baseline": self.baseline,
            "metric": self.metric,
            "seeds": " ".join(map(str, self.seeds)),
            "n": self.stats.n,
            **{f: getattr(self.stats, f) for f in SUMMARY_FIELDS},
        }
        return {c: cells[c] for c in PAIRED_COLUMNS}


@dataclass
class Grouping:
    """Runs, their groups and the paired differences against the baseline; saves and loads itself."""

    root: str
    runs: list[RunRecord]
    groups: list[GroupSummary]
    paired: list[PairedDifference]
    metrics: list[str]
    baseline: str | None
    confidence: float = CONFIDENCE

    def group(self, label: str) -> GroupSummary:
        """The group called ``label``."""
        for g in self.groups:
            if g.group == label:
                return g
        raise ConfigError(
            f"group={label!r} is not one of the groups: {', '.join(repr(g.group) for g in self.groups)}"
        )

    def to_dict(self) -> dict[str, Any]:
        return _json_safe(
            {
                "root": self.root,
                "baseline": self.baseline,
                "confidence": self.confidence,
                "metrics": list(self.metrics),
                "runs": [asdict(r) for r in self.runs],
                "groups": [
                    {**asdict(g), "stats": {m: s.to_dict() for m, s in g.stats.items()}} for g in self.groups
                ],
                "paired": [{**asdict(p), "stats": p.stats.to_dict()} for p in self.paired],
            }
        )

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Grouping:
        """Read :meth:`to_dict` (statistics of another version too: see :meth:`Summary.from_dict`)."""
        summary = Summary.from_dict
        return cls(
            root=d["root"],
            baseline=d.get("baseline"),
            confidence=float(d.get("confidence", CONFIDENCE)),
            metrics=list(d["metrics"]),
            runs=[
                RunRecord(**{**r, "metrics": {k: _nan(v) for k, v in r["metrics"].items()}})
                for r in d["runs"]
            ],
            groups=[
                GroupSummary(**{**g, "stats": {m: summary(s) for m, s in g["stats"].items()}})
                for g in d["groups"]
            ],
            paired=[PairedDifference(**{**p, "stats": summary(p["stats"])}) for p in d["paired"]],
        )

    def to_json(self, path: str | Path) -> Path:
        """Write everything as JSON (NaN as ``null``), atomically."""
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def from_json(cls, path: str | Path) -> Grouping:
        p = Path(path)
        try:
            return cls.from_dict(json.loads(p.read_text()))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ResultFileError(f"{str(p)!r} is not a groups.json written by landscape: {exc}") from None

    def groups_csv(self) -> str:
        return csv_table([g.row(self.metrics) for g in self.groups])

    def paired_csv(self) -> str:
        """One line per (group, metric) against the baseline; only the header when there is none."""
        return csv_table([p.row() for p in self.paired], PAIRED_COLUMNS)

    @property
    def run_columns(self) -> list[str]:
        """The columns of ``runs_grouped.csv``: what each run is, then its metrics."""
        return ["run", "group", "seed", "optimizer", "decomposition", "rho", *self.metrics]

    def runs_csv(self) -> str:
        columns = self.run_columns
        return csv_table([{c: r.row().get(c) for c in columns} for r in self.runs])

    def table_metrics(self, first: str = "test_accuracy") -> list[str]:
        """The metrics ``groups.md`` shows: ``first``, then ``lambda_max``, ``trace`` and the sharpness
        measures that some run has."""
        found = [
            m
            for m in ("lambda_max", "trace", *(m for m in self.metrics if m.startswith("sharpness_")))
            if m in self.metrics and any(math.isfinite(g.stats[m].mean) for g in self.groups)
        ]
        head = [first] if first in self.metrics else []  # checkpoint-only runs have no accuracy
        return [*head, *(m for m in found if m != first)]

    def save(self, out_dir: str | Path, *, table_metric: str = "test_accuracy") -> dict[str, Path]:
        """Write ``groups.json``, ``groups.csv``, ``paired.csv``, ``runs_grouped.csv`` and ``groups.md``
        (one seed-study table per metric of :meth:`table_metrics`)."""
        out = Path(out_dir)
        if table_metric != "test_accuracy":
            markdown_table(self, table_metric)  # refuses a metric the runs do not have
        markdown = "\n\n".join(markdown_table(self, m) for m in self.table_metrics(table_metric))
        return {
            "json": self.to_json(out / "groups.json"),
            "groups": atomic_write_text(out / "groups.csv", self.groups_csv()),
            "paired": atomic_write_text(out / "paired.csv", self.paired_csv()),
            "runs": atomic_write_text(out / "runs_grouped.csv", self.runs_csv()),
            "markdown": atomic_write_text(out / "groups.md", markdown + "\n"),
        }


def _nan(v: Any) -> float:
    return float("nan") if v is None else float(v)


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    return obj


def csv_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """Rows under ``columns`` (default: the first row's keys; no header without rows or columns)."""
    header = list(columns) if columns is not None else list(rows[0]) if rows else []
    if not header:
        return ""
    return csv_text(({k: _cell(v) for k, v in r.items()} for r in rows), header)


def _cell(v: Any) -> Any:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    return v


# -- group keys and labels --------------------------------------------------------------------------
def group_key(config: dict[str, Any]) -> str:
    """The run's settings without its seed, as canonical JSON: equal for runs that differ only by seed.

    ``landscape train`` draws the training sample with the run's seed (``data.seed = seed``): that
    tie is kept as ``"=seed"``, so such runs still group; the sample seed of a run without a subset
    (the whole split) changes nothing and is dropped.
    """
    cfg = dict(config)
    seed = cfg.pop("seed", None)
    data = cfg.get("data")
    if isinstance(data, dict) and "seed" in data:
        data = dict(data)
        if data.get("subset") is None:
            del data["seed"]
        elif data["seed"] == seed:
            data["seed"] = "=seed"
        cfg["data"] = data
    return json.dumps(cfg, sort_keys=True, default=str)


def method_label(optimizer: str | None, decomposition: str | None) -> str:
    """``SAM-magnitude elementwise``: the optimizer's printed name and its decomposition."""
    name = METHOD_NAMES.get(optimizer or "", optimizer or "?")
    return f"{name} {decomposition}" if decomposition else name


def base_label(optimizer: str | None, decomposition: str | None, rho: float | None) -> str:
    """``SAM-magnitude elementwise rho=0.2`` (no rho for methods without one)."""
    label = method_label(optimizer, decomposition)
    return f"{label} rho={rho:g}" if rho is not None else label


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _labels(keys: dict[str, dict[str, Any]]) -> dict[str, str]:
    """A readable, unique label per group key: the base label, plus the settings that tell apart
    groups sharing it (e.g. ``SGD lr=0.1`` and ``SGD lr=0.05``)."""
    by_base: dict[str, list[str]] = {}
    for key, cfg in keys.items():
        by_base.setdefault(
            base_label(
                cfg.get("optimizer"), (cfg.get("optimizer_kwargs") or {}).get("decomposition"), cfg.get("rho")
            ),
            [],
        ).append(key)
    labels = {}
    for base, members in by_base.items():
        if len(members) == 1:
            labels[members[0]] = base
            continue
        flat = {k: _flatten(json.loads(k)) for k in members}
        names = sorted({n for f in flat.values() for n in f})
        differ = [n for n in names if len({json.dumps(f.get(n), default=str) for f in flat.values()}) > 1]
        for k in members:
            extra = " ".join(f"{n.rsplit('.', 1)[-1]}={flat[k].get(n)}" for n in differ)
            labels[k] = f"{base} {extra}"
    return labels


# -- reading runs -----------------------------------------------------------------------------------
def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return doc if isinstance(doc, dict) else None


def _sharpness_extras(source: str | None) -> dict[str, float]:
    """``trace`` and any sharpness measures (``sharpness_<name>``) of the ``sharpness.json`` that
    gave the run's ``lambda_max``: only a file checked to belong to the final weights is read."""
    if source is None or source == "computed":
        return {}
    try:
        return _curvature_metrics(read_sharpness_file(source))
    except ResultFileError:
        return {}


def _curvature_metrics(record: SharpnessFile) -> dict[str, float]:
    out = {}
    if record.result.trace is not None:
        out["trace"] = float(record.result.trace.estimate)
    for name, m in (record.result.measures or {}).items():
        if not math.isnan(m.value):
            out[f"sharpness_{name}"] = float(m.value)
    return out


def _run_metrics(s: RunSummary) -> dict[str, float]:
    metrics = {
        "test_accuracy": s.test_accuracy,
        "test_loss": s.test_loss,
        "train_accuracy": s.train_accuracy,
        "train_loss": s.train_loss,
        "lambda_max": _nan(s.lambda_max),
    }
    for k in STAT_KEYS:
        metrics[f"{k}_early"] = _nan(s.stats_early.get(k))
        metrics[f"{k}_late"] = _nan(s.stats_late.get(k))
    metrics.update(_sharpness_extras(s.lambda_max_source))
    # measures asked of the comparison (computed, or read from a file checked to fit) come last
    for name, m in s.measures.items():
        metrics[f"sharpness_{name}"] = _nan(m.get("value"))
    return metrics


def checkpoint_only_dirs(root: Path) -> list[Path]:
    """Folders directly under ``root`` with checkpoint files but no ``config.json`` (other tools' runs)."""
    if not root.is_dir() or is_run_dir(root):
        return []
    return sorted(
        d
        for d in root.iterdir()
        if d.is_dir()
        and not (d / "config.json").exists()
        and any(f.suffix in CHECKPOINT_SUFFIXES and f.is_file() for f in d.iterdir())
    )


def _foreign_record(path: Path) -> RunRecord:
    """A checkpoint-only run: a group of its own, with ``lambda_max``/``trace`` of a sharpness.json in it."""
    metrics: dict[str, float] = {}
    try:
        record = read_sharpness_file(path / SHARPNESS_FILE) if (path / SHARPNESS_FILE).is_file() else None
    except ResultFileError:
        record = None
    if record is not None and record.result.which == "LA":
        metrics["lambda_max"] = record.result.lambda_max
        metrics.update(_curvature_metrics(record))
    return RunRecord(
        run=path.name,
        path=str(path),
        group=f"{path.name} (checkpoint only)",
        seed=None,
        optimizer=None,
        decomposition=None,
        rho=None,
        metrics=metrics,
    )


def run_records(comparison: Comparison, *, foreign: Sequence[Path] = ()) -> list[RunRecord]:
    """The runs of ``comparison`` with their group labels and seeds, then the checkpoint-only folders."""
    configs = []
    for s in comparison.runs:
        cfg = _read_json(Path(s.path) / "config.json")
        if cfg is None:
            raise ResultFileError(f"cannot read {str(Path(s.path) / 'config.json')!r} as a JSON object")
        configs.append(cfg)
    keys = [group_key(c) for c in configs]
    labels = _labels({k: json.loads(k) for k in keys})
    records = []
    for s, cfg, key in zip(comparison.runs, configs, keys):
        seed = cfg.get("seed")
        records.append(
            RunRecord(
                run=s.name,
                path=s.path,
                group=labels[key],
                seed=int(seed) if isinstance(seed, int) else None,
                optimizer=s.optimizer,
                decomposition=s.decomposition,
                rho=s.rho,
                metrics=_run_metrics(s),
                curves={k: list(v) for k, v in s.epoch_stats.items()},
            )
        )
    records.extend(_foreign_record(Path(p)) for p in foreign)
    return records


# -- the comparison ---------------------------------------------------------------------------------
def summarize_groups(
    records: Sequence[RunRecord],
    *,
    baseline: str | None = "sgd",
    confidence: float = CONFIDENCE,
    root: str = "",
) -> Grouping:
    """Per-group statistics and paired differences against ``baseline`` of already read runs.

    Args:
        records: the runs (from :func:`run_records`).
        baseline: the group the others are compared with: a group label, or an optimizer name that
            exactly one group has (``"sgd"``); ``"auto"``: the one SGD group if there is exactly one,
            else none; ``None`` for no paired differences.
        confidence: coverage of the t-intervals.
        root: recorded as where the runs are.

    Raises:
        ConfigError: ``baseline`` names no group, or an optimizer several groups have.
    """
    metrics = [m for m in BASE_METRICS if any(m in r.metrics for r in records)]
    metrics += sorted({m for r in records for m in r.metrics} - set(metrics))
    members: dict[str, list[RunRecord]] = {}
    for r in records:
        members.setdefault(r.group, []).append(r)
    groups = []
    for label, runs in members.items():
        first = runs[0]
        seeds = sorted(r.seed for r in runs if r.seed is not None)
        dup = sorted({s for s in seeds if seeds.count(s) > 1})
        if dup:
            raise ResultFileError(
                f"group {label!r} has several runs with seed {dup[0]} "
                f"({', '.join(r.path for r in runs if r.seed == dup[0])}); remove the copies"
            )
        groups.append(
            GroupSummary(
                group=label,
                optimizer=first.optimizer,
                decomposition=first.decomposition,
                rho=first.rho,
                runs=[r.run for r in runs],
                seeds=seeds,
                stats={
                    m: summarize([r.metrics.get(m, float("nan")) for r in runs], confidence=confidence)
                    for m in metrics
                },
            )
        )
    if baseline == AUTO_BASELINE:
        sgd = [g.group for g in groups if g.optimizer == "sgd" and g.seeds]
        baseline = sgd[0] if len(sgd) == 1 else None
    base_label_ = _baseline_group(groups, baseline) if baseline is not None else None
    pairs = [(g.group, base_label_) for g in groups if base_label_ is not None and g.group != base_label_]
    paired = pair_by_seed(records, pairs, metrics, confidence=confidence)
    return Grouping(
        root=root,
        runs=list(records),
        groups=groups,
        paired=paired,
        metrics=metrics,
        baseline=base_label_,
        confidence=confidence,
    )


def pair_by_seed(
    records: Sequence[RunRecord],
    pairs: Sequence[tuple[str, str]],
    metrics: Sequence[str],
    *,
    confidence: float = CONFIDENCE,
) -> list[PairedDifference]:
    """``group - baseline`` of each metric over the seeds both groups have, for each label pair.

    A pair without a shared seed (a checkpoint-only run) and a metric that no shared seed has on
    both sides give no line.
    """
    members: dict[str, dict[int, RunRecord]] = {}
    for r in records:
        if r.seed is not None:
            members.setdefault(r.group, {})[r.seed] = r
    paired: list[PairedDifference] = []
    for group, base in pairs:
        runs, base_runs = members.get(group, {}), members.get(base, {})
        if not set(runs) & set(base_runs):
            continue
        for m in metrics:
            seeds, s = paired_differences(
                {k: r.metrics.get(m) for k, r in runs.items()},
                {k: r.metrics.get(m) for k, r in base_runs.items()},
                confidence=confidence,
            )
            if seeds:
                paired.append(PairedDifference(group, base, m, seeds, s))
    return paired


def _baseline_group(groups: Sequence[GroupSummary], baseline: str) -> str | None:
    labels = [g.group for g in groups]
    if baseline in labels:
        return baseline
    by_optimizer = [g.group for g in groups if g.optimizer == baseline]
    if len(by_optimizer) == 1:
        return by_optimizer[0]
    if len(by_optimizer) > 1:
        raise ConfigError(
            f"baseline={baseline!r} matches several groups ({', '.join(map(repr, by_optimizer))}); "
            "give one of these labels"
        )
    raise ConfigError(
        f"baseline={baseline!r} is neither a group nor the optimizer of one; choose one of "
        f"{', '.join(map(repr, labels))}"
    )


def read_comparison(root: str | Path, **compare_kwargs: Any) -> Comparison:
    """The per-run table of ``root`` (:func:`landscape.runs.compare_runs`), empty when ``root`` holds
    only checkpoint-only folders (they join the grouping on their own).

    Raises:
        ResultFileError: ``root`` holds neither runs nor checkpoint-only folders, or a damaged run.
    """
    base = Path(root)
    if checkpoint_only_dirs(base) and not any(is_run_dir(d) for d in base.iterdir() if d.is_dir()):
        return Comparison(root=str(base), runs=[])
    return compare_runs(base, **compare_kwargs)


def group_runs(
    root: str | Path,
    *,
    baseline: str | None = "sgd",
    confidence: float = CONFIDENCE,
    comparison: Comparison | None = None,
    **compare_kwargs: Any,
) -> Grouping:
    """Read every run under ``root``, group the seeds, summarize and pair them against ``baseline``.

    Args:
        root: a folder of run folders (``landscape train``/``landscape sweep``) and checkpoint-only folders.
        baseline: see :func:`summarize_groups`; a baseline missing from ``root`` is an error.
        confidence: coverage of the t-intervals.
        comparison: the per-run table when already read (``compare_runs(root)``); read here otherwise.
        **compare_kwargs: passed to :func:`landscape.runs.compare_runs` (``sharpness_samples``, ...).

    Raises:
        ResultFileError: ``root`` holds no runs, or a run folder is damaged.
        ConfigError: a bad ``baseline`` or ``confidence``.
    """
    base = Path(root)
    foreign = checkpoint_only_dirs(base)
    if comparison is None:
        comparison = read_comparison(base, **compare_kwargs)
    records = run_records(comparison, foreign=foreign)
    if baseline is not None and not any(r.seed is not None for r in records):
        baseline = None  # checkpoint-only runs have no seeds to pair
    return summarize_groups(records, baseline=baseline, confidence=confidence, root=str(base))


def _format(x: float, digits: int) -> str:
    return f"{x:.{digits}f}" if math.isfinite(x) else "n/a"


def seed_study_table(
    grouping: Grouping, metric: str = "test_accuracy", *, digits: int = 4
) -> tuple[list[str], list[list[str]]]:
    """The seed study's layout as ``(header, rows)``: one row per method, one column per ``rho``,
    cells ``mean ± std (n)`` (Luong 2024, Table 1).

    Methods without a radius (SGD) fill the ``-`` column; checkpoint-only groups get their own rows.
    A cell with one run shows its value alone.

    Raises:
        ConfigError: ``metric`` is not one of the grouping's metrics.
    """
    if metric not in grouping.metrics:
        raise ConfigError(f"metric={metric!r} is not valid; choose one of {', '.join(grouping.metrics)}")
    rhos = sorted({g.rho for g in grouping.groups if g.rho is not None})
    columns: list[float | None] = ([None] if any(g.rho is None for g in grouping.groups) else []) + list(rhos)
    rows: dict[str, dict[float | None, str]] = {}
    for g in grouping.groups:
        method = g.group if g.optimizer is None else _strip_rho(g.group, g.rho)
        s = g.stats.get(metric, summarize([]))
        cell = _format(s.mean, digits)
        if s.n > 1:
            cell += f" ± {_format(s.std, digits)}"
        cell += f" (n={s.n})"
        rows.setdefault(method, {})[g.rho] = cell
    head = ["method", *("-" if r is None else f"rho={r:g}" for r in columns)]
    return head, [[method, *(cells.get(r, "") for r in columns)] for method, cells in rows.items()]


def markdown_table(grouping: Grouping, metric: str = "test_accuracy", *, digits: int = 4) -> str:
    """:func:`seed_study_table` as Markdown, under a line naming the metric.

    Raises:
        ConfigError: ``metric`` is not one of the grouping's metrics.
    """
    head, rows = seed_study_table(grouping, metric, digits=digits)
    lines = [
        f"{metric}: mean ± std over seeds",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" for _ in head) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _strip_rho(label: str, rho: float | None) -> str:
    """The row name of a group: its label without ``rho=...`` (the column says it)."""
    if rho is None:
        return label
    return " ".join(part for part in label.split(" ") if part != f"rho={rho:g}")


@dataclass
class Band:
    """A step statistic of one group against training progress: per epoch, mean and t-interval over seeds."""

    group: str
    statistic: str
    epoch: list[float]
    mean: list[float]
    ci95_low: list[float]
    ci95_high: list[float]
    n: list[int]

    def to_dict(self) -> dict[str, Any]:
        return _json_safe(asdict(self))


def step_bands(grouping: Grouping, statistic: str = "grad_norm_ratio") -> list[Band]:
    """Per group that logs ``statistic`` (the SAM family): its per-epoch mean over the steps of each
    run, summarized across the seeds at each epoch (mean and Student-t interval).

    Raises:
        ConfigError: ``statistic`` is not one of ``STAT_KEYS``.
    """
    if statistic not in STAT_KEYS:
        raise ConfigError(f"statistic={statistic!r} is not valid; choose one of {', '.join(STAT_KEYS)}")
    members: dict[str, list[RunRecord]] = {}
    for r in grouping.runs:
        members.setdefault(r.group, []).append(r)
    bands = []
    for label, runs in members.items():
        per_epoch: dict[float, list[float]] = {}
        for r in runs:
            for e, v in zip(r.curves.get("epoch", []), r.curves.get(statistic, [])):
                per_epoch.setdefault(e, []).append(v)
        stats = {e: summarize(v, confidence=grouping.confidence) for e, v in sorted(per_epoch.items())}
        stats = {e: s for e, s in stats.items() if s.n > 0}
        if not stats:
            continue
        bands.append(
            Band(
                group=label,
                statistic=statistic,
                epoch=list(stats),
                mean=[s.mean for s in stats.values()],
                ci95_low=[s.ci95_low for s in stats.values()],
                ci95_high=[s.ci95_high for s in stats.values()],
                n=[s.n for s in stats.values()],
            )
        )
    return bands
