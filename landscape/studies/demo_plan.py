"""The demo's plan: its settings, the grid of runs, the comparisons it states, and what running it gives.

Every (method, decomposition, rho, seed) point of :class:`DemoSettings` is one training run
(:class:`RunPoint`); runs that differ only by seed form a group, labelled as the report names it
(``SAM-magnitude (global) rho=0.2``); :func:`comparison_pairs` lists the paired comparisons
(SAM-magnitude against SAM-direction at the same rho and decomposition, every method against SGD).
:mod:`landscape.studies.demo` runs the plan; :mod:`landscape.studies.demo_report` states it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from landscape.errors import ConfigError, check_choice

if TYPE_CHECKING:
    from landscape.runs.grouping import Grouping

DATA_CHOICES = ("digits", "mnist1d", "text")
# Sharpness beyond the Hessian in every run's sharpness.json (landscape.measures, default settings):
# adaptive-free average- and worst-case sharpness, so flatness is judged by several measures at once.
DEMO_MEASURES = ("average", "worst")
METHODS = ("sgd", "sam", "sam-direction", "sam-magnitude")
DECOMPOSED = ("sam-direction", "sam-magnitude")


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
    data_kwargs: dict[str, Any] = field(default_factory=dict)
    train_samples: int | None = None

    def to_dict(self) -> dict[str, Any]:
        d = json.loads(json.dumps(asdict(self)))  # tuples become lists, as in the saved file
        # written only where used, so the demo folders of digits and mnist1d keep their demo.json
        for key, unset in (("data_kwargs", {}), ("train_samples", None)):
            if d[key] == unset:
                del d[key]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DemoSettings:
        """The settings :meth:`to_dict` wrote (lists back to tuples)."""
        tuples = {f.name for f in fields(cls) if str(f.type).startswith("tuple")}
        return cls(**{k: tuple(v) if k in tuples else v for k, v in d.items()})


def demo_settings(data: str = "digits", *, quick: bool = False, seed: int = 0) -> DemoSettings:
    """The demo's settings for ``data`` (``digits``, ``mnist1d`` or ``text``); ``quick`` runs in under a
    minute (``text``: a few).

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
    elif data == "text":
        # a character-level GPT-2 (gpt-tiny, 2 layers of width 32) on 32-character sequences of the
        # standard library's help text; SGD with momentum as for the other data, on 1024 sequences
        base = DemoSettings(
            data=data,
            quick=quick,
            data_name="text",
            data_kwargs={"seq_len": 32},
            train_samples=1024,
            model={"name": "gpt-tiny", "kwargs": {"n_layer": 2, "n_embd": 32, "n_head": 2}},
            epochs=4,
            lr=0.3,
            batch_size=32,
            sharpness_samples=128,
            surface_points=11,
            interpolation_points=21,
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
        base.epochs = min(base.epochs, 6)
        base.sharpness_samples = min(base.sharpness_samples, 256)
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


@dataclass
class DemoResult:
    """Where everything is, and the numbers the report states.

    Attributes:
        out_dir: the demo folder.
        settings: what it was run with.
        grouping: the runs grouped by seed (:mod:`landscape.runs.grouping`), with the paired
            differences of :func:`comparison_pairs`.
        rows: one row per run (``runs.csv``): the grouping's metrics and the curvature's provenance.
        showcase: the SGD and SAM run folders whose spectra and surfaces are drawn.
        surfaces: the surface files (``sgd``, ``sam``, ``line``).
        seconds: wall time of this invocation.
        files: every file written, by name.
    """

    out_dir: Path
    settings: DemoSettings
    grouping: Grouping
    rows: list[dict[str, Any]]
    showcase: dict[str, Path]
    surfaces: dict[str, Path]
    seconds: float
    files: dict[str, Path] = field(default_factory=dict)
