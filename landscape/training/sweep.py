"""A grid of training runs (``landscape sweep``): methods x decompositions x radii x seeds, resumable.

Each point of the grid is one run of :func:`train` in its own folder under the sweep's root, named
after what it varies (``sam-magnitude_elementwise_rho0.2_seed1``). The grid gives a decomposition only
to the optimizers that take one (SAM-direction and SAM-magnitude, as
:func:`~landscape.optim.factory.resolve_options` reports) and a radius only to those that have one
(not ``sgd``/``adam``/``adamw``/``newton-summary``), so no run is made twice under two names.

Rerunning a sweep is nearly free: a folder whose ``summary.json`` exists and whose ``config.json``
holds the point's settings is skipped, one with ``config.json`` but no ``summary.json`` was interrupted
and :func:`train` resumes it exactly; a folder holding a run with other settings stops the sweep before
anything runs. With ``jobs > 1`` the runs go to separate processes, ``jobs`` at a time, each handed its
``TrainConfig`` as ``config.json`` holds it (:mod:`~landscape.training.sweep_worker`), so a new
training setting needs nothing here. The CPU threads are split between them (``OMP_NUM_THREADS``):
small models train fastest on one thread each, and oversubscribed threads slow every process down.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from landscape.device import dtype_name
from landscape.errors import ConfigError, LandscapeError, ResultFileError, check_positive
from landscape.io.atomic import atomic_write_text
from landscape.optim.decompose import DECOMPOSITIONS
from landscape.optim.factory import resolve_options, run_option_defaults
from landscape.optim.registry import optimizer_entry, optimizer_names
from landscape.threads import torch_threads
from landscape.training.config import TrainConfig, factory_name, recorded_settings, resolve_saved_settings
from landscape.training.loop import train
from landscape.training.sweep_worker import job_document

Log = Callable[[str], None]


def takes_decomposition(optimizer: str) -> bool:
    """Whether ``optimizer`` has a ``decomposition`` option (SAM-direction, SAM-magnitude)."""
    return "decomposition" in resolve_options(optimizer)[1]


def takes_rho(optimizer: str) -> bool:
    """Whether ``optimizer`` has a radius (``rho``) in the registry; sgd, adam, adamw and
    newton-summary do not."""
    return optimizer_entry(optimizer).takes_rho


@dataclass(frozen=True)
class SweepPoint:
    """One run of the grid: ``rho=None`` is the method's default radius (or none), likewise the
    decomposition."""

    optimizer: str
    decomposition: str | None
    rho: float | None
    seed: int

    @property
    def name(self) -> str:
        """Folder name: ``sam-magnitude_elementwise_rho0.2_seed1``, ``sgd_seed0``."""
        parts = [self.optimizer]
        if self.decomposition is not None:
            parts.append(self.decomposition)
        if self.rho is not None:
            parts.append(f"rho{self.rho:g}")
        parts.append(f"seed{self.seed}")
        return "_".join(parts)

    def config(self, base: TrainConfig) -> TrainConfig:
        """``base`` with this point's optimizer, radius, decomposition and seed (the data sample's too,
        as ``landscape train --seed`` sets it)."""
        kwargs = dict(base.optimizer_kwargs)
        kwargs.pop("decomposition", None)
        if self.decomposition is not None:
            kwargs["decomposition"] = self.decomposition
        return dataclasses.replace(
            base,
            model=dataclasses.replace(base.model, kwargs=dict(base.model.kwargs)),
            data=dataclasses.replace(base.data, seed=self.seed),
            optimizer=self.optimizer,
            rho=self.rho,
            optimizer_kwargs=kwargs,
            seed=self.seed,
        )


def plan_sweep(
    optimizers: Sequence[str],
    seeds: Sequence[int],
    *,
    decompositions: Sequence[str] = (),
    rhos: Sequence[float] = (),
) -> list[SweepPoint]:
    """Every point of the grid, in the order given (optimizer, decomposition, rho, seed).

    Args:
        optimizers: names from ``OPTIMIZER_NAMES``.
        seeds: training seeds (>= 0, distinct): one run per seed at every other point.
        decompositions: ``global``/``elementwise`` for the optimizers that take one; empty: their default.
        rhos: radii (>= 0) for the optimizers that have one; empty: each method's default.

    Raises:
        ConfigError: an empty list, an unknown optimizer or decomposition, a negative or repeated value.
    """
    _check_list("optimizers", optimizers, allow_empty=False)
    _check_list("seeds", seeds, allow_empty=False)
    _check_list("decompositions", decompositions)
    _check_list("rhos", rhos)
    names = optimizer_names()
    for name in optimizers:
        if name not in names:
            raise ConfigError(f"optimizers: {name!r} is not valid; choose from {', '.join(names)}")
    for dec in decompositions:
        if dec not in DECOMPOSITIONS:
            raise ConfigError(
                f"decompositions: {dec!r} is not valid; choose from {', '.join(DECOMPOSITIONS)}"
            )
    for rho in rhos:
        if not (math.isfinite(rho) and rho >= 0):
            raise ConfigError(f"rhos: {rho!r} is not valid; a radius must be a finite number >= 0")
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ConfigError(f"seeds: {seed!r} is not valid; seeds are whole numbers >= 0")
    points = []
    for name in optimizers:
        decs: Sequence[str | None] = (decompositions or [None]) if takes_decomposition(name) else [None]
        radii: Sequence[float | None] = (rhos or [None]) if takes_rho(name) else [None]
        for dec in decs:
            for rho in radii:
                points.extend(SweepPoint(name, dec, rho, seed) for seed in seeds)
    return points


def _check_list(name: str, values: Sequence[Any], *, allow_empty: bool = True) -> None:
    if not allow_empty and not values:
        raise ConfigError(f"{name} is empty; give at least one value")
    repeated = sorted({repr(v) for v in values if list(values).count(v) > 1})
    if repeated:
        raise ConfigError(f"{name}: {repeated[0]} is given twice; give each value once")


# -- the state of each point on disk ------------------------------------------------------------------
@dataclass
class PlannedRun:
    """A point, its settings and folder, and what running the sweep will do with it."""

    point: SweepPoint
    config: TrainConfig
    out_dir: Path
    status: str  # "new", "resume" (interrupted) or "done" (skipped)

    @property
    def name(self) -> str:
        """The run's folder name."""
        return self.out_dir.name


def _expected_config(config: TrainConfig, dtype: torch.dtype) -> dict[str, Any]:
    """What :func:`train` records in ``config.json`` for ``config``, except the model's keyword
    arguments that it fills in from the data."""
    name = factory_name(config.optimizer)
    given = {**run_option_defaults(name, seed=config.seed), **config.optimizer_kwargs}
    rho, options = resolve_options(name, rho=config.rho, **given)
    return recorded_settings(
        dataclasses.replace(config, rho=rho, optimizer_kwargs=options), dtype_name(dtype)
    )


def config_differences(saved: dict[str, Any], config: TrainConfig, dtype: torch.dtype) -> list[str]:
    """The settings in which a saved ``config.json`` differs from ``config`` (empty: the same run).

    The model's keyword arguments match when every one ``config`` gives is saved with that value
    (``train`` adds the input size and class count it reads from the data).
    """
    wanted = _expected_config(config, dtype)
    saved = resolve_saved_settings(saved)  # a run recorded before later settings existed
    differ = []
    for key in sorted(set(saved) | set(wanted)):
        a, b = saved.get(key), wanted.get(key)
        if key == "track_samples" and b is None and config.track_sharpness is not None:
            same = isinstance(a, int)  # train fills in the training set's size (up to the default)
        elif key == "model" and isinstance(a, dict) and isinstance(b, dict):
            kwargs = a.get("kwargs") if isinstance(a.get("kwargs"), dict) else {}
            same = a.get("name") == b.get("name") and all(
                kwargs.get(k) == v for k, v in (b.get("kwargs") or {}).items()
            )
        else:
            same = a == b
        if not same:
            differ.append(key)
    return differ


def plan_runs(
    root: str | Path,
    base: TrainConfig,
    points: Sequence[SweepPoint],
    *,
    dtype: torch.dtype = torch.float32,
    names: Sequence[str] | None = None,
) -> list[PlannedRun]:
    """Each point with its settings, folder ``root/<name>`` and status (new, resume or done).

    ``names`` gives the folder names (one per point, distinct) where a caller has its own scheme;
    by default each point's :attr:`SweepPoint.name`.

    Raises:
        ResultFileError: a folder holds a run with other settings (nothing has been run yet).
        ConfigError: a setting of ``base`` is invalid.
    """
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise ConfigError(f"out_dir {str(root)!r} exists and is not a directory")
    folders = [p.name for p in points] if names is None else list(names)
    if len(folders) != len(points) or len(set(folders)) != len(folders):
        raise ConfigError(f"names must give one distinct folder name per point ({len(points)} points)")
    planned = []
    for point, folder in zip(points, folders):
        config = point.config(base)
        config.validate()
        out = root / folder
        status = "new"
        config_path = out / "config.json"
        if config_path.is_file():
            try:
                saved = json.loads(config_path.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise ResultFileError(
                    f"{str(config_path)!r} is unreadable ({exc}); remove the folder {str(out)!r} to redo that run"
                ) from None
            differ = config_differences(saved if isinstance(saved, dict) else {}, config, dtype)
            if differ:
                raise ResultFileError(
                    f"{str(out)!r} holds a run with other settings ({', '.join(differ)} differ); "
                    "use another out_dir for this sweep or remove that folder"
                )
            status = "done" if (out / "summary.json").is_file() else "resume"
        planned.append(PlannedRun(point, config, out, status))
    return planned


def describe_plan(planned: Sequence[PlannedRun]) -> list[str]:
    """One line per run: ``[i/n] status  name  (optimizer, decomposition, rho, seed)``."""
    n = len(planned)
    lines = []
    for i, p in enumerate(planned, 1):
        c = p.config
        dec = c.optimizer_kwargs.get("decomposition")
        what = f"optimizer={c.optimizer}" + (f" decomposition={dec}" if dec else "")
        what += f" rho={c.rho:g}" if c.rho is not None else (" rho=default" if takes_rho(c.optimizer) else "")
        lines.append(f"[{i}/{n}] {p.status:<6} {p.name}  ({what} seed={c.seed})")
    return lines


# -- running ----------------------------------------------------------------------------------------
@dataclass
class SweepResult:
    """What a sweep did: the runs trained (with their final metrics), skipped and failed."""

    root: Path
    planned: list[PlannedRun]
    trained: dict[str, dict[str, float]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    #: per failed run, the file holding its whole error (the run's stderr when it ran apart)
    logs: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "runs": [p.name for p in self.planned],
            "trained": self.trained,
            "skipped": self.skipped,
            "failed": self.failed,
            "logs": self.logs,
            "seconds": self.seconds,
        }


def run_sweep(
    root: str | Path,
    base: TrainConfig,
    points: Sequence[SweepPoint],
    *,
    jobs: int = 1,
    threads: int | None = None,
    device: str = "auto",
    dtype: torch.dtype = torch.float32,
    names: Sequence[str] | None = None,
    raise_errors: bool = False,
    log: Log = print,
) -> SweepResult:
    """Train every point not finished yet into ``root/<name>``; one progress line per run.

    Args:
        root: the sweep folder (created).
        base: the settings every run shares (its optimizer, rho, decomposition and seed are replaced).
        points: from :func:`plan_sweep`.
        jobs: runs at once; above 1 each run is a separate :mod:`~landscape.training.sweep_worker`
            process.
        threads: CPU threads per run (default: with ``jobs=1`` torch's current setting, otherwise the
            machine's CPUs divided by ``jobs``, at least 1).
        device: ``auto|cpu|cuda[:N]|mps``.
        dtype: training dtype.
        names: folder names instead of the points' own (see :func:`plan_runs`).
        raise_errors: with ``jobs=1``, stop at the first run that fails and raise its error.
        log: called with each progress line.

    Returns:
        :class:`SweepResult`. A run that fails with a :class:`~landscape.errors.LandscapeError` (or a
        process that exits non-zero) is recorded in ``failed`` with its message; the others still run.

    Raises:
        ConfigError: bad ``jobs``/``threads`` or settings; ResultFileError: a folder holds another run.
    """
    check_positive("jobs", jobs)
    if threads is not None:
        check_positive("threads", threads)
    # One run at a time keeps torch's threads unless told; parallel runs share the CPUs.
    per_run = threads if threads is not None else max(1, (os.cpu_count() or 1) // jobs)
    in_process_threads = threads if threads is not None else torch.get_num_threads()
    t0 = time.perf_counter()
    planned = plan_runs(root, base, points, dtype=dtype, names=names)
    todo = [p for p in planned if p.status != "done"]
    if jobs > 1:
        for p in todo:
            job_document(p.config, p.out_dir, device=device, dtype=dtype)  # refuse before any run
    result = SweepResult(Path(root), planned)
    n = len(planned)
    index = {p.name: i for i, p in enumerate(planned, 1)}
    for p in planned:
        if p.status == "done":
            result.skipped.append(p.name)
            log(f"[{index[p.name]}/{n}] {p.name}: finished earlier, skipped")

    def report(
        p: PlannedRun, seconds: float, metrics: dict[str, float] | None, error: str | None, text: str = ""
    ) -> None:
        head = f"[{index[p.name]}/{n}] {p.name}:"
        failure_log = failure_log_path(p.out_dir)
        if error is not None:
            result.failed[p.name] = error
            result.logs[p.name] = str(atomic_write_text(failure_log, (text or error).rstrip() + "\n"))
            log(f"{head} failed after {seconds:.1f} s: {error}")
            return
        failure_log.unlink(missing_ok=True)  # an earlier failure's log no longer applies
        result.trained[p.name] = metrics or {}
        acc = (metrics or {}).get("test_accuracy")
        verb = "resumed and finished" if p.status == "resume" else "finished"
        tail = f", test accuracy {acc:.4f}" if isinstance(acc, float) else ""
        log(f"{head} {verb} in {seconds:.1f} s{tail}")

    if jobs == 1:
        with torch_threads(in_process_threads):
            for p in todo:
                start = time.perf_counter()
                try:
                    res = train(p.config, p.out_dir, device=device, dtype=dtype, quiet=True)
                except LandscapeError as exc:
                    if raise_errors:
                        raise
                    report(p, time.perf_counter() - start, None, str(exc))
                    continue
                report(p, time.perf_counter() - start, dict(res.final_metrics), None)
    else:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = {pool.submit(_run_worker, p, per_run, device, dtype): p for p in todo}
            for future in as_completed(futures):
                seconds, metrics, error, text = future.result()
                report(futures[future], seconds, metrics, error, text)
    result.seconds = time.perf_counter() - t0
    return result


def failure_log_path(out_dir: Path) -> Path:
    """Where a failed run's error is kept: ``<run>.failed.log`` beside its folder (which a run that
    failed early may not have)."""
    return out_dir.parent / f"{out_dir.name}.failed.log"


def _train_process(
    p: PlannedRun, threads: int, device: str, dtype: torch.dtype
) -> tuple[float, dict[str, float] | None, str | None]:
    """Train ``p`` in a :mod:`~landscape.training.sweep_worker` process: (seconds, final metrics or None,
    error or None)."""
    return _run_worker(p, threads, device, dtype)[:3]


def _run_worker(
    p: PlannedRun, threads: int, device: str, dtype: torch.dtype
) -> tuple[float, dict[str, float] | None, str | None, str]:
    """:func:`_train_process` with the process's stderr as a fourth item (empty on success)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    job = job_document(p.config, p.out_dir, device=device, dtype=dtype)
    cmd = [sys.executable, "-m", "landscape.training.sweep_worker"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, input=job, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        return seconds, None, (lines[-1] if lines else f"exit status {proc.returncode}"), proc.stderr
    try:
        metrics = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return seconds, {}, None, ""
    return seconds, {k: v for k, v in metrics.items() if isinstance(v, float)}, None, ""
