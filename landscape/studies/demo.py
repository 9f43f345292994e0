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
    DIR/groups.csv            per group: n, seeds, <metric>_mean/_std/_ci95_low/_ci95_high
    DIR/paired.csv            paired differences by seed (magnitude - direction, SAM family - SGD)
    DIR/findings.json         the headline comparisons as numbers
    DIR/figures/*.png, DIR/report.md, DIR/report.html

The demo is a plan (:mod:`landscape.studies.demo_plan`) run by the library's own pieces, one
implementation of each: training by :func:`landscape.training.sweep.run_sweep` (skip finished runs,
resume interrupted ones), the curvature by :func:`landscape.analysis.sharpness` into each run's
``sharpness.json`` (:mod:`landscape.analysis.result_file`: ``landscape compare`` reads the same files),
the runs by :func:`landscape.runs.compare_runs`, the groups and paired differences by
:mod:`landscape.runs.grouping`, and the report by :mod:`landscape.studies.demo_report`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from landscape.errors import ConfigError, ResultFileError
from landscape.io.atomic import atomic_write_json, atomic_write_text
from landscape.io.result_folder import check_same_settings, read_settings
from landscape.studies.demo_plan import (
    DATA_CHOICES,
    DEMO_MEASURES,
    DemoResult,
    DemoSettings,
    RunPoint,
    comparison_pairs,
    demo_settings,
    plan_runs,
)
from landscape.threads import torch_threads

if TYPE_CHECKING:  # imported where used: ``landscape demo --help`` loads no torch
    from landscape.analysis.result_file import SharpnessFile
    from landscape.runs.grouping import Grouping

__all__ = ["DATA_CHOICES", "DemoResult", "DemoSettings", "RunPoint", "demo_settings", "plan_runs", "run_demo"]
Log = Callable[[str], None]
#: What ``runs.csv`` adds to the grouping's columns: how each run's curvature was obtained.
CURVATURE_COLUMNS = ("lambda_max_converged", "trace_stderr", "sharpness_samples")


# -- the grid of runs --------------------------------------------------------------------------------
def _base_config(settings: DemoSettings) -> Any:
    """The settings every run of the demo shares (the sweep sets optimizer, rho, decomposition, seed)."""
    from landscape.data.datasets import DataSpec
    from landscape.models.builders import ModelSpec
    from landscape.training import TrainConfig

    return TrainConfig(
        model=ModelSpec.from_dict(settings.model),
        data=DataSpec(
            settings.data_name,
            split="train",
            subset=settings.train_samples,
            kwargs=dict(settings.data_kwargs),
        ),
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
def measure_sharpness(
    run_dir: Path, settings: DemoSettings, *, density: bool, device: str = "auto"
) -> SharpnessFile:
    """``lambda_max``, ``tr(H)``, the :data:`DEMO_MEASURES` (and the SLQ density) of ``run_dir/final.pt``
    into ``run_dir/sharpness.json`` (:func:`~landscape.analysis.result_file.write_sharpness_file`).

    The sample is the same fixed, seeded subset of the training set for every run, so the numbers are
    comparable across runs. A ``sharpness.json`` made with these very settings (weights included) is
    kept; any other (a file of an older demo, without its provenance) is measured again.

    Returns:
        The run's :class:`~landscape.analysis.result_file.SharpnessFile`.
    """
    from landscape.analysis import SharpnessOptions, sharpness
    from landscape.analysis.result_file import (
        SHARPNESS_FILE,
        SharpnessFile,
        read_sharpness_file,
        sharpness_settings,
        write_sharpness_file,
    )
    from landscape.objective.loading import objective_from_checkpoint

    objective, ckpt, spec = objective_from_checkpoint(
        run_dir / "final.pt",
        split="train",
        samples=settings.sharpness_samples,
        seed=settings.analysis_seed,
        device=device,
        batch_size=settings.sharpness_samples,
    )
    options = SharpnessOptions(
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
    wanted = sharpness_settings(
        options, ckpt, spec, batch_size=settings.sharpness_samples, dtype=objective.dtype, bn_mode="eval"
    )
    try:
        stored = read_sharpness_file(run_dir / SHARPNESS_FILE)
        if _canonical(stored.settings) == _canonical(wanted):
            return stored
    except ResultFileError:
        pass  # absent, damaged or made before files recorded their provenance: measured now
    record = SharpnessFile.from_settings(
        sharpness(objective, options), wanted, checkpoint=run_dir / "final.pt"
    )
    write_sharpness_file(run_dir, record)
    return record


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str)


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


# -- the grouped comparison ----------------------------------------------------------------------------
def group_demo_runs(points: Sequence[RunPoint], root: Path, settings: DemoSettings) -> Grouping:
    """The runs of the plan read as ``landscape compare`` reads them (:func:`landscape.runs.compare_runs`:
    final metrics, step statistics, the curvature of each stored ``sharpness.json``), grouped by seed
    under the demo's labels, in the plan's order, with the paired differences of
    :func:`~landscape.studies.demo_plan.comparison_pairs`.

    Raises:
        ResultFileError: a run of the plan is missing, or its ``sharpness.json`` does not fit its
            final weights.
    """
    from landscape.runs import Comparison, compare_runs
    from landscape.runs.grouping import pair_by_seed, run_records, summarize_groups

    by_name = {r.name: r for r in compare_runs(root).runs}
    for p in points:
        run = by_name.get(p.name)
        if run is None or run.lambda_max is None:
            why = "it is missing" if run is None else run.lambda_max_note
            raise ResultFileError(f"run {str(root / p.name)!r} of the demo cannot be read: {why}")
    records = run_records(Comparison(root=str(root), runs=[by_name[p.name] for p in points]))
    for record, point in zip(records, points):
        record.group = point.group  # the report's labels: SAM-magnitude (global) rho=0.2
    grouping = summarize_groups(records, baseline=None, root=str(root))
    grouping.paired = pair_by_seed(records, comparison_pairs(settings), grouping.metrics)
    return grouping


def run_rows(grouping: Grouping, sharpness: dict[str, SharpnessFile]) -> list[dict[str, Any]]:
    """One row per run: the grouping's columns, then how its curvature was obtained (Lanczos converged,
    the trace's standard error, the sample size) from its ``sharpness.json``."""
    rows = []
    for record in grouping.runs:
        result = sharpness[record.run].result
        rows.append(
            {
                **record.row(),
                "lambda_max_converged": bool(result.converged[0]),
                "trace_stderr": result.trace.stderr if result.trace is not None else float("nan"),
                "sharpness_samples": result.samples,
            }
        )
    return rows


# -- the whole demo --------------------------------------------------------------------------------
def _check_settings(out: Path, settings: DemoSettings) -> None:
    """Refuse a demo folder made with other settings (the one result-folder guard), then record ours."""
    path = out / "demo.json"
    wanted = settings.to_dict()
    if path.is_file():
        check_same_settings(
            out,
            read_settings(path, fix="use another out_dir"),
            wanted,
            template="{path} holds a demo made with other settings ({differences} differ); use another out_dir",
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
    from landscape.runs.grouping import csv_table
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
    sharpness = {
        d.name: measure_sharpness(d, settings, density=d in showcase.values(), device=device) for d in dirs
    }
    log(f"  done ({time.perf_counter() - t1:.1f} s)")

    log("3/4 loss surfaces of SGD and SAM and the interpolation SGD -> SAM")
    surfaces = _surfaces(showcase["sgd"], showcase["sam"], out / "surfaces", settings, device=device, log=log)

    log("4/4 grouped comparison and report")
    grouping = group_demo_runs(points, out / "runs", settings)
    rows = run_rows(grouping, sharpness)
    columns = [*grouping.run_columns, *CURVATURE_COLUMNS]
    files = {
        "runs.csv": atomic_write_text(out / "runs.csv", csv_table(rows, columns)),
        "groups.csv": atomic_write_text(out / "groups.csv", grouping.groups_csv()),
        "paired.csv": atomic_write_text(out / "paired.csv", grouping.paired_csv()),
    }
    result = DemoResult(
        out_dir=out,
        settings=settings,
        grouping=grouping,
        rows=rows,
        showcase=showcase,
        surfaces=surfaces,
        seconds=time.perf_counter() - t0,
        files=files,
    )
    files.update(write_demo_report(result))
    return result
