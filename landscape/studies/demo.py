"""``landscape demo``: the empirical SAM study in small, end to end, on CPU in minutes.

Does SAM find flatter minima through the *direction* or the *magnitude* of its update? The demo
trains SGD, SAM, SAM-direction and SAM-magnitude (both decompositions, ``global`` and
``elementwise``) at two radii with several seeds on embedded data (scikit-learn's digits, or MNIST-1D),
measures ``lambda_max`` (Lanczos) and ``tr(H)`` (Hutch++) of every final checkpoint on a fixed sample
of the training set, the spectral density (SLQ) of one SGD and one SAM run, their 2D loss surfaces
(filter-normalized random directions, one colour scale) and the loss along the straight line from the
SGD to the SAM solution (same seed: same initialization and data order), then compares the groups of
seeds: mean, std and a 95% Student-t interval, and paired differences by seed.

Stages write their results next to each other under ``DIR`` and are skipped when their output exists,
so an interrupted demo resumes where it stopped::

    DIR/demo.json             the settings (a DIR made with other settings is refused)
    DIR/runs/<run>/           one run folder of ``landscape train`` per point, + sharpness.json
    DIR/surfaces/*.npz        2D surfaces of SGD and SAM, the SGD -> SAM interpolation
    DIR/runs.csv              one row per run
    DIR/groups.csv            per group: n, <metric>_mean/_std/_ci95_low/_ci95_high
    DIR/paired.csv            paired differences by seed (SAM family - SGD, magnitude - direction)
    DIR/findings.json         the headline comparisons as numbers
    DIR/figures/*.png, DIR/report.md, DIR/report.html

Training goes through :func:`landscape.training.sweep.run_sweep` (skip finished runs, resume interrupted ones),
the statistics through :mod:`landscape.runs.stats` and the per-group table through
:func:`landscape.runs.grouping.summarize_groups`: one implementation of each, shared with ``landscape sweep``
and the grouped comparison.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from landscape.errors import ConfigError, ResultFileError, check_choice
from landscape.io.atomic import atomic_write_json, atomic_write_text
from landscape.threads import torch_threads

DATA_CHOICES = ("digits", "mnist1d")
STEP_STATS = ("grad_norm_ratio", "cosine", "frac_larger")  # as logged in steps.csv by the SAM family
LATE_FRACTION = 0.1
METRICS = (
    "test_accuracy",
    "test_loss",
    "train_loss",
    "lambda_max",
    "trace",
    "sharpness_average",
    "sharpness_worst",
    *(f"{k}_late" for k in STEP_STATS),
)
# Sharpness beyond the Hessian in every run's sharpness.json (landscape.measures, default settings):
# adaptive-free average- and worst-case sharpness, so flatness is judged by several measures at once.
DEMO_MEASURES = ("average", "worst")
METHODS = ("sgd", "sam", "sam-direction", "sam-magnitude")
DECOMPOSED = ("sam-direction", "sam-magnitude")
Log = Callable[[str], None]


# -- settings --------------------------------------------------------------------------------------
@dataclass
class DemoSettings:
    """Everything that determines the demo's numbers (saved as ``DIR/demo.json``)."""

    data: str
    quick: bool
    data_name: str
    model: dict[str, Any]
    methods: tuple[str, ...] = METHODS
    decompositions: tuple[str, ...] = ("global", "elementwise")
    rhos: tuple[float, ...] = (0.05, 0.2)
    seeds: tuple[int, ...] = (0, 1, 2)
    epochs: int = 30
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 64
    sharpness_samples: int = 512
    lanczos_tol: float = 1e-3
    trace_matvecs: int = 30
    density_runs: int = 3
    density_steps: int = 30
    surface_points: int = 21
    surface_range: float = 1.0
    interpolation_points: int = 31
    showcase_rho: float = 0.2
    analysis_seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))  # tuples become lists, as in the saved file


def demo_settings(data: str = "digits", *, quick: bool = False, seed: int = 0) -> DemoSettings:
    """The demo's settings for ``data`` (``digits`` or ``mnist1d``); ``quick`` runs in under a minute.

    Quick keeps every method (one decomposition, one radius) and two seeds, so intervals exist.
    ``seed`` is the first training seed (the others follow it) and the seed of every analysis draw
    (the sample, Lanczos and Hutch++ probes, SLQ, surface directions).
    """
    if seed < 0:
        raise ConfigError(f"seed={seed} must be >= 0")
    check_choice("data", data, DATA_CHOICES)
    if data == "digits":
        # the hand trial: MLP 64-128-128-10, SGD momentum 0.9, lr 0.1, wd 5e-4, batch 64
        base = DemoSettings(
            data=data,
            quick=quick,
            data_name="digits",
            model={
                "name": "mlp",
                "kwargs": {"in_features": 64, "hidden": [128, 128], "num_classes": 10, "activation": "relu"},
            },
        )
    else:
        base = DemoSettings(
            data=data,
            quick=quick,
            data_name="landscape.data.mnist1d:mnist1d_dataset",
            model={"name": "landscape.models.mnist1d:MNIST1DMLP", "kwargs": {}},
            lr=0.05,
            batch_size=100,
        )
    if quick:
        base.decompositions = ("global",)
        base.rhos = (0.2,)
        base.seeds = (0, 1)
        base.epochs = 6
        base.sharpness_samples = 256
        base.trace_matvecs = 12
        base.density_runs = 2
        base.density_steps = 20
        base.surface_points = 9
        base.interpolation_points = 13
    base.seeds = tuple(seed + s for s in base.seeds)
    base.analysis_seed = seed
    return base


# -- the grid of runs --------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunPoint:
    """One training run of the demo: a :class:`~landscape.training.sweep.SweepPoint` with the demo's group label
    and folder name.

    The folder name ends in ``_s<seed>`` where the sweep's ends in ``_seed<seed>``: existing demo
    folders resume by these names, so they stay.
    """

    optimizer: str
    rho: float | None
    decomposition: str | None
    seed: int

    @property
    def sweep_point(self) -> Any:
        """The same run as a :class:`~landscape.training.sweep.SweepPoint` (which trains it)."""
        from landscape.training.sweep import SweepPoint

        return SweepPoint(self.optimizer, self.decomposition, self.rho, self.seed)

    @property
    def group(self) -> str:
        """Readable name of the seed group (everything but the seed)."""
        from landscape.runs.grouping import METHOD_NAMES

        label = METHOD_NAMES.get(self.optimizer, self.optimizer)
        if self.decomposition is not None:
            label += f" ({self.decomposition})"
        if self.rho is not None:
            label += f" rho={self.rho:g}"
        return label

    @property
    def name(self) -> str:
        """Folder name of the run: the sweep's name with ``s<seed>`` for ``seed<seed>``."""
        return self.sweep_point.name.removesuffix(f"seed{self.seed}") + f"s{self.seed}"


def plan_runs(settings: DemoSettings) -> list[RunPoint]:
    """Every (method, decomposition, rho, seed): rho not for SGD, decomposition only where it applies."""
    points = []
    for method in settings.methods:
        rhos: Sequence[float | None] = [None] if method == "sgd" else settings.rhos
        decs: Sequence[str | None] = settings.decompositions if method in DECOMPOSED else [None]
        for rho in rhos:
            for dec in decs:
                points.extend(RunPoint(method, rho, dec, seed) for seed in settings.seeds)
    return points


def _base_config(settings: DemoSettings) -> Any:
    """The settings every run of the demo shares (the sweep sets optimizer, rho, decomposition, seed)."""
    from landscape.data.datasets import DataSpec
    from landscape.models.builders import ModelSpec
    from landscape.training import TrainConfig

    return TrainConfig(
        model=ModelSpec.from_dict(settings.model),
        data=DataSpec(settings.data_name, split="train"),
        lr=settings.lr,
        momentum=settings.momentum,
        weight_decay=settings.weight_decay,
        batch_size=settings.batch_size,
        epochs=settings.epochs,
        save_every=settings.epochs,  # epoch 0 and the final weights are all the demo reads
    )


def train_runs(
    points: Sequence[RunPoint], root: Path, settings: DemoSettings, *, device: str = "auto", log: Log = print
) -> list[Path]:
    """Train every point into ``root/<name>`` (finished runs are skipped, interrupted ones resumed)."""
    from landscape.training.sweep import plan_runs as plan_sweep_runs
    from landscape.training.sweep import run_sweep

    base = _base_config(settings)
    names = [p.name for p in points]
    sweep_points = [p.sweep_point for p in points]
    planned = plan_sweep_runs(root, base, sweep_points, names=names)
    todo = [i for i, p in enumerate(planned) if p.status != "done"]
    if todo:
        run_sweep(
            root,
            base,
            [sweep_points[i] for i in todo],
            names=[names[i] for i in todo],
            device=device,
            raise_errors=True,
            log=lambda line: log(f"  {line}"),
        )
    return [root / name for name in names]


# -- sharpness, density, surfaces ------------------------------------------------------------------
def measure_sharpness(run_dir: Path, settings: DemoSettings, *, density: bool, device: str = "auto") -> Path:
    """``lambda_max``, ``tr(H)``, the :data:`DEMO_MEASURES` (and the SLQ density) of ``run_dir/final.pt``.

    The sample is the same fixed, seeded subset of the training set for every run, so the numbers are
    comparable across runs. Skipped when ``sharpness.json`` already exists.
    """
    from landscape.analysis import sharpness
    from landscape.objective.loading import objective_from_checkpoint

    out = run_dir / "sharpness.json"
    if out.is_file():
        return out
    objective, _, _ = objective_from_checkpoint(
        run_dir / "final.pt",
        split="train",
        samples=settings.sharpness_samples,
        seed=settings.analysis_seed,
        device=device,
        batch_size=settings.sharpness_samples,
    )
    result = sharpness(
        objective,
        top_k=1,
        tol=settings.lanczos_tol,
        with_trace=True,
        trace_matvecs=settings.trace_matvecs,
        density=density,
        density_runs=settings.density_runs,
        density_steps=settings.density_steps,
        measures=DEMO_MEASURES,
        seed=settings.analysis_seed,
    )
    result.save(out)
    return out


def _surfaces(
    sgd: Path, sam: Path, out: Path, settings: DemoSettings, *, device: str, log: Log
) -> dict[str, Path]:
    """2D random-direction surfaces of both solutions and the SGD -> SAM line (resumable files)."""
    from landscape.surface import CheckpointSource, surface_from_checkpoint

    r, n = settings.surface_range, settings.surface_points
    grid = np.linspace(-r, r, n)
    source = CheckpointSource(
        split="train",
        samples=settings.sharpness_samples,
        batch_size=settings.sharpness_samples,
        device=device,
    )
    common = {"source": source, "seed": settings.analysis_seed, "quiet": True}
    paths = {"sgd": out / "surface_sgd.npz", "sam": out / "surface_sam.npz", "line": out / "sgd_to_sam.npz"}
    t0 = time.perf_counter()
    for key, ckpt, label in (("sgd", sgd, "SGD"), ("sam", sam, f"SAM rho={settings.showcase_rho:g}")):
        surface_from_checkpoint(ckpt / "final.pt", xs=grid, ys=grid, out=paths[key], label=label, **common)
    surface_from_checkpoint(
        sgd / "final.pt",
        xs=np.linspace(-0.5, 1.5, settings.interpolation_points),
        dir_type="interpolation",
        to=sam / "final.pt",
        out=paths["line"],
        label="SGD -> SAM",
        **common,
    )
    log(
        f"  surfaces: 2 x {n}x{n} grid points and {settings.interpolation_points} along SGD -> SAM "
        f"({time.perf_counter() - t0:.1f} s)"
    )
    return paths


# -- statistics -------------------------------------------------------------------------------------
def mean_ci(values: Sequence[float], confidence: float = 0.95) -> dict[str, float]:
    """``n``, mean, sample std (ddof 1) and the Student-t interval (:func:`landscape.runs.stats.summarize`).

    Non-finite values are dropped; with fewer than two values the std and interval are NaN.
    """
    from landscape.runs.stats import summarize

    return summarize(list(values), confidence=confidence).to_dict()


def late_step_stats(steps_csv: Path, fraction: float = LATE_FRACTION) -> dict[str, float]:
    """Means of ``||g_SAM||/||g_SGD||``, their cosine and ``frac_larger`` over the last ``fraction`` of steps.

    NaN for runs that log none of them (SGD).
    """
    out = {f"{k}_late": float("nan") for k in STEP_STATS}
    if not steps_csv.is_file():
        return out
    try:
        with open(steps_csv, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, csv.Error) as exc:
        raise ResultFileError(f"cannot read {str(steps_csv)!r}: {exc}") from None
    late = rows[-max(1, round(fraction * len(rows))) :] if rows else []
    for k in STEP_STATS:
        vals = [float(r[k]) for r in late if r.get(k) not in (None, "")]
        if vals:
            out[f"{k}_late"] = float(np.mean(vals))
    return out


def run_row(point: RunPoint, run_dir: Path) -> dict[str, Any]:
    """One run's final metrics (``summary.json``), curvature (``sharpness.json``) and late step statistics."""
    try:
        final = json.loads((run_dir / "summary.json").read_text())["final"]
        sharp = json.loads((run_dir / "sharpness.json").read_text())
    except (OSError, json.JSONDecodeError, KeyError) as exc:
        raise ResultFileError(f"cannot read the results of run {str(run_dir)!r}: {exc}") from None
    trace = sharp.get("trace") or {}
    return {
        "run": point.name,
        "group": point.group,
        "optimizer": point.optimizer,
        "decomposition": point.decomposition or "",
        "rho": point.rho if point.rho is not None else "",
        "seed": point.seed,
        "train_loss": float(final["train_loss"]),
        "train_accuracy": float(final["train_accuracy"]),
        "test_loss": float(final["test_loss"]),
        "test_accuracy": float(final["test_accuracy"]),
        "lambda_max": float(sharp["eigenvalues"][0]),
        "lambda_max_converged": bool(sharp["converged"][0]),
        "trace": float(trace.get("estimate", float("nan"))),
        "trace_stderr": float(trace.get("stderr", float("nan"))),
        "sharpness_samples": int(sharp["samples"]),
        **{f"sharpness_{name}": _measure_value(sharp, name) for name in DEMO_MEASURES},
        **late_step_stats(run_dir / "steps.csv"),
    }


def _measure_value(sharp: dict[str, Any], name: str) -> float:
    """A measure's value from ``sharpness.json`` (NaN when the file predates it or it is non-finite)."""
    value = ((sharp.get("measures") or {}).get(name) or {}).get("value")
    return float(value) if isinstance(value, (int, float)) else float("nan")


def group_table(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per group of seeds: ``n`` and ``<metric>_mean/_std/_ci95_low/_ci95_high``, in first-seen order."""
    from landscape.runs.grouping import RunRecord, summarize_groups
    from landscape.runs.stats import SUMMARY_FIELDS

    records = [
        RunRecord(
            run=str(r.get("run", "")),
            path="",
            group=r["group"],
            seed=int(r["seed"]),
            optimizer=r["optimizer"],
            decomposition=r["decomposition"],
            rho=r["rho"],
            metrics={m: float(r.get(m, float("nan"))) for m in METRICS},
        )
        for r in rows
    ]
    table = []
    for g in summarize_groups(records, baseline=None).groups:
        entry: dict[str, Any] = {
            "group": g.group,
            "optimizer": g.optimizer,
            "decomposition": g.decomposition,
            "rho": g.rho,
            "n": g.n,
        }
        for metric in METRICS:
            entry.update({f"{metric}_{k}": getattr(g.stats[metric], k) for k in SUMMARY_FIELDS})
        table.append(entry)
    return table


def paired_differences(
    rows: Sequence[dict[str, Any]], pairs: Sequence[tuple[str, str]]
) -> list[dict[str, Any]]:
    """For each ``(a, b)`` group pair and metric: ``a - b`` over the seeds both have, with its interval
    (:func:`landscape.runs.stats.paired_differences`)."""
    from landscape.runs.stats import paired_differences as paired

    by_group: dict[str, dict[int, dict[str, Any]]] = {}
    for r in rows:
        by_group.setdefault(r["group"], {})[int(r["seed"])] = r
    out = []
    for a, b in pairs:
        if not set(by_group.get(a, {})) & set(by_group.get(b, {})):
            continue
        for metric in METRICS:
            seeds, s = paired(
                {k: r.get(metric) for k, r in by_group[a].items()},
                {k: r.get(metric) for k, r in by_group[b].items()},
            )
            out.append({"a": a, "b": b, "metric": metric, "seeds": " ".join(map(str, seeds)), **s.to_dict()})
    return out


def comparison_pairs(settings: DemoSettings) -> list[tuple[str, str]]:
    """SAM-family groups against SGD, and SAM-magnitude against SAM-direction (same rho, decomposition)."""
    points = {p.group: p for p in plan_runs(settings)}
    sgd = next((g for g, p in points.items() if p.optimizer == "sgd"), None)
    pairs: list[tuple[str, str]] = []
    for g, p in points.items():
        if p.optimizer == "sam-magnitude":
            direction = RunPoint("sam-direction", p.rho, p.decomposition, p.seed).group
            if direction in points:
                pairs.append((g, direction))
    if sgd is not None:
        pairs += [(g, sgd) for g, p in points.items() if p.optimizer != "sgd"]
    return pairs


# -- the whole demo --------------------------------------------------------------------------------
@dataclass
class DemoResult:
    """Where everything is, and the tables the report states."""

    out_dir: Path
    settings: DemoSettings
    rows: list[dict[str, Any]]
    groups: list[dict[str, Any]]
    paired: list[dict[str, Any]]
    showcase: dict[str, Path]
    surfaces: dict[str, Path]
    seconds: float
    files: dict[str, Path] = field(default_factory=dict)


def _csv(rows: Sequence[dict[str, Any]]) -> str:
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    return buf.getvalue()


def _check_settings(out: Path, settings: DemoSettings) -> None:
    path = out / "demo.json"
    wanted = settings.to_dict()
    if path.is_file():
        try:
            previous = json.loads(path.read_text()).get("settings")
        except (OSError, json.JSONDecodeError) as exc:
            raise ResultFileError(f"{str(path)!r} is unreadable ({exc}); use another out_dir") from None
        if previous != wanted:
            changed = sorted(
                k for k in set(previous or {}) | set(wanted) if (previous or {}).get(k) != wanted.get(k)
            )
            raise ResultFileError(
                f"{str(out)!r} holds a demo made with other settings ({', '.join(changed)} differ); "
                "use another out_dir"
            )
    atomic_write_json(path, {"settings": wanted})


def run_demo(
    out_dir: str | Path,
    settings: DemoSettings | None = None,
    *,
    device: str = "auto",
    threads: int | None = 1,
    log: Log = print,
) -> DemoResult:
    """Train, measure, compare and write the report; each stage skips what is already on disk.

    Args:
        out_dir: the demo folder (created).
        settings: from :func:`demo_settings` (default: the full digits demo).
        device: ``auto|cpu|cuda[:N]|mps`` for training and analysis.
        threads: torch CPU threads while the demo runs (restored afterwards; ``None``: unchanged).
            One thread is the fastest for these small models, and several threads slow down by
            10x or more on a shared machine (measured: a 6-epoch SAM run 1.7 s with 1, 30 s with 2).
        log: called with one line per finished step.

    Returns:
        :class:`DemoResult` with the tables and every file's path.

    Raises:
        ResultFileError: ``out_dir`` holds a demo made with other settings.
    """
    with torch_threads(threads):
        return _run_demo(out_dir, settings, device=device, log=log)


def _run_demo(out_dir: str | Path, settings: DemoSettings | None, *, device: str, log: Log) -> DemoResult:
    from landscape.studies.demo_report import write_demo_report

    t0 = time.perf_counter()
    settings = settings if settings is not None else demo_settings()
    if settings.showcase_rho not in settings.rhos and "sam" in settings.methods:
        settings.showcase_rho = settings.rhos[-1]
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"out_dir {str(out)!r} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    _check_settings(out, settings)

    points = plan_runs(settings)
    log(f"1/4 training {len(points)} runs ({settings.epochs} epochs each) under {out / 'runs'}")
    dirs = train_runs(points, out / "runs", settings, device=device, log=log)

    first = settings.seeds[0]
    showcase = {
        "sgd": out / "runs" / RunPoint("sgd", None, None, first).name,
        "sam": out / "runs" / RunPoint("sam", settings.showcase_rho, None, first).name,
    }
    log(f"2/4 lambda_max and trace of {len(dirs)} runs on {settings.sharpness_samples} training examples")
    t1 = time.perf_counter()
    for d in dirs:
        measure_sharpness(d, settings, density=d in showcase.values(), device=device)
    log(f"  done ({time.perf_counter() - t1:.1f} s)")

    log("3/4 loss surfaces of SGD and SAM and the interpolation SGD -> SAM")
    surfaces = _surfaces(showcase["sgd"], showcase["sam"], out / "surfaces", settings, device=device, log=log)

    log("4/4 grouped comparison and report")
    rows = [run_row(p, d) for p, d in zip(points, dirs)]
    groups = group_table(rows)
    paired = paired_differences(rows, comparison_pairs(settings))
    files = {
        "runs.csv": atomic_write_text(out / "runs.csv", _csv(rows)),
        "groups.csv": atomic_write_text(out / "groups.csv", _csv(groups)),
        "paired.csv": atomic_write_text(out / "paired.csv", _csv(paired)),
    }
    result = DemoResult(
        out_dir=out,
        settings=settings,
        rows=rows,
        groups=groups,
        paired=paired,
        showcase=showcase,
        surfaces=surfaces,
        seconds=time.perf_counter() - t0,
        files=files,
    )
    files.update(write_demo_report(result))
    return result
