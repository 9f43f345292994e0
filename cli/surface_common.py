"""Options and output helpers shared by ``landscape plot1d`` and ``landscape plot2d``."""

from __future__ import annotations

import functools
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import click
import numpy as np

from landscape.cli.common import F, _compose, echo_json, output_options, seed_option, source_options
from landscape.cli.result_folder import check_batch_size, check_out_folder
from landscape.distributed import environment_rank
from landscape.errors import ConfigError, ResultFileError
from landscape.io.atomic import save_figure as write_figure
from landscape.surface.directions import IGNORES, MODES, NORMS
from landscape.surface.from_checkpoint import CheckpointSource, surface_from_checkpoint
from landscape.surface.grid import BN_POLICIES
from landscape.surface.precision import PRECISIONS
from landscape.surface.store import NonFiniteLossWarning, Surface, SurfaceMismatchError

FIGURE_FORMATS = ("png", "pdf")
FIGURE_DPI = 150


def parse_range(text: str, name: str = "--x") -> np.ndarray:
    """Parse ``MIN:MAX:NUM`` into ``NUM`` evenly spaced coordinates (both ends included).

    Raises:
        ConfigError: not three numbers, ``NUM < 1``, or ``MIN > MAX`` (naming the option ``name``).
    """
    parts = str(text).split(":")
    try:
        if len(parts) != 3:
            raise ValueError
        lo, hi, num = float(parts[0]), float(parts[1]), int(parts[2])
    except ValueError:
        raise ConfigError(f"{name}={text!r} is not valid; use MIN:MAX:NUM, e.g. -1:1:51") from None
    if num < 1:
        raise ConfigError(f"{name}={text!r}: NUM={num} must be >= 1")
    if not np.isfinite(lo) or not np.isfinite(hi) or lo > hi:
        raise ConfigError(f"{name}={text!r}: MIN must be <= MAX and both finite")
    if num == 1 and lo != hi:
        raise ConfigError(f"{name}={text!r}: NUM=1 needs MIN == MAX")
    return np.linspace(lo, hi, num)


direction_options = _compose(
    click.option(
        "--norm",
        default="filter",
        show_default=True,
        type=click.Choice(NORMS),
        help="Normalization of random directions (Li et al. 2018 filter normalization by default). A filter "
        "is one output unit, decided by the module: a row of Linear, Embedding (one token or position) and "
        "packed attention projections, an output channel of a convolution, a column of Hugging Face "
        "Conv1D (GPT-2).",
    ),
    click.option(
        "--ignore",
        default="biasbn",
        show_default=True,
        type=click.Choice(IGNORES),
        help="biasbn: biases and norm layers' weights and biases (BatchNorm, LayerNorm, ...) do not move; "
        "none: they move too.",
    ),
    click.option(
        "--mode",
        default=None,
        type=click.Choice(MODES),
        help="states: batch-norm running statistics move too, means linearly and variances "
        "geometrically (v1^(1-alpha) v2^alpha, positive past both ends), so each checkpoint lands on "
        "itself; weights: every point keeps CHECKPOINT's statistics, so alpha = 1 is not the --to "
        "checkpoint (other loss). Default: states with --to/--ckpts, else weights.",
    ),
)

evaluation_options = _compose(
    click.option(
        "--bn",
        default="fixed",
        show_default=True,
        type=click.Choice(BN_POLICIES),
        help="Batch norm: keep the running statistics, or re-estimate them on the data at each point.",
    ),
    click.option("--overwrite", is_flag=True, help="Replace a surface file computed with other settings."),
    click.option(
        "--chunk-size", default=8, show_default=True, type=int, help="Grid points per rank between gathers."
    ),
    click.option(
        "--points-per-pass",
        default="auto",
        show_default=True,
        metavar="N|auto",
        help="Grid points evaluated in one pass over the data (one vmapped forward of stacked weights); "
        "auto: as many as an 8 MiB working set allows on small convolution-free models, 1 on large ones and with --bn "
        "recalibrate. Changes speed only, not the surface file's settings.",
    ),
    click.option(
        "--precision",
        default="float32",
        show_default=True,
        metavar="|".join(PRECISIONS),
        help="Run each forward under torch.autocast in bfloat16 or float16 (losses from float32 "
        "outputs, summed in float64; weights and directions stay float32); a few points (centre, "
        "corners) are evaluated again in float32 and the difference is printed and saved. Needs a "
        "float32 model. Part of the surface file's settings.",
    ),
    click.option(
        "--save-every",
        default=10.0,
        show_default=True,
        type=float,
        help="Seconds between atomic saves of the surface file (0: after every chunk).",
    ),
    click.option(
        "--max-points", default=None, type=int, help="Stop after N new points; rerun the command to resume."
    ),
    click.option(
        "--eigen-tol", default=1e-4, show_default=True, type=float, help="Lanczos tolerance (eigen)."
    ),
    click.option(
        "--name",
        default=None,
        help="Base name of the surface file and figures (default: RUN_STEM_DIRTYPE_1d/2d inside a run "
        "folder, else STEM_DIRTYPE_1d/2d).",
    ),
    click.option(
        "--label",
        default=None,
        help="Legend label and title (default: 'run (file)' and the direction type).",
    ),
    click.option(
        "--format",
        "formats",
        multiple=True,
        default=("png",),
        show_default=True,
        type=click.Choice(FIGURE_FORMATS),
        help="Figure format (repeat for both).",
    ),
    click.option(
        "--from",
        "from_files",
        multiple=True,
        type=click.Path(path_type=Path, dir_okay=False),
        help="Redraw from surface file(s) without computing (repeat to overlay or share a colour scale).",
    ),
)


@dataclass(frozen=True)
class SurfaceJob:
    """The options ``plot1d`` and ``plot2d`` share, handed to the command as one ``job``
    (see :func:`surface_options`), with what both commands do with them."""

    norm: str
    ignore: str
    mode: str | None
    bn: str
    overwrite: bool
    chunk_size: int
    points_per_pass: str
    precision: str
    save_every: float
    max_points: int | None
    eigen_tol: float
    name: str | None
    label: str | None
    formats: tuple[str, ...]
    from_files: tuple[Path, ...]
    seed: int
    out: Path | None
    as_json: bool
    quiet: bool
    source: dict[str, Any]

    def check(self, checkpoint: Path | None) -> None:
        """Refuse bad shared options, and CHECKPOINT with ``--from`` or neither of them."""
        check_common_inputs(self.out, self.source, chunk_size=self.chunk_size, max_points=self.max_points)
        if self.from_files and checkpoint is not None:
            raise ConfigError("give either CHECKPOINT (compute) or --from surface.npz (redraw), not both")
        if not self.from_files and checkpoint is None:
            raise ConfigError("missing CHECKPOINT (or --from surface.npz to redraw a saved surface)")

    def load(self) -> list[Surface]:
        """The ``--from`` surface files."""
        return [Surface.load(p) for p in self.from_files]

    def compute(self, checkpoint: Path, path: Path, **grid: Any) -> Surface:
        """The surface of CHECKPOINT in ``path`` (resumed when it is there): ``grid`` holds the
        command's own options (coordinates, direction type and its checkpoints)."""
        return compute_surface_file(
            checkpoint,
            **grid,
            norm=self.norm,
            ignore=self.ignore,
            mode=self.mode,
            seed=self.seed,
            bn=self.bn,
            out=path,
            overwrite=self.overwrite,
            source=self.source,
            eigen_tol=self.eigen_tol,
            chunk_size=self.chunk_size,
            points_per_pass=parse_points_per_pass(self.points_per_pass),
            precision=self.precision,
            save_every=self.save_every,
            max_points=self.max_points,
            label=self.label,
            quiet=self.quiet,
        )

    def finish(
        self, surfaces: Sequence[Surface], surface_file: Path, figures: Sequence[Path], result: dict[str, Any]
    ) -> None:
        """Print ``result`` as JSON with ``--json``, else the summary (``surface_file`` when computed)."""
        if self.as_json:
            echo_json(result)
            return
        echo_summary(surfaces, None if self.from_files else str(surface_file), figures)


_JOB_KEYS = tuple(f.name for f in fields(SurfaceJob))


def surface_options(f: F) -> F:
    """The direction, evaluation, source, seed and output options, handed to the command as one
    :class:`SurfaceJob` ``job``."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        job = SurfaceJob(**{k: kwargs.pop(k) for k in _JOB_KEYS})
        return f(*args, job=job, **kwargs)

    return direction_options(evaluation_options(source_options(seed_option(output_options(wrapper)))))


def summaries(surfaces: Sequence[Surface]) -> list[dict[str, Any]]:
    """Each surface's ``--json`` summary (without its metadata)."""
    return [{k: v for k, v in s.to_dict().items() if k != "metadata"} for s in surfaces]


def is_rank_zero() -> bool:
    """Only rank 0 of a ``torchrun`` job draws and prints."""
    return environment_rank() == 0


def save_figure(fig: Any, out: Path, stem: str, formats: Sequence[str]) -> list[Path]:
    """Write a figure atomically in every format; returns the paths."""
    return [write_figure(fig, out / f"{stem}.{fmt}", dpi=FIGURE_DPI) for fmt in formats]


def parse_points_per_pass(text: str) -> int | str:
    """``--points-per-pass``: ``auto`` or a positive integer.

    Raises:
        ConfigError: anything else, naming the flag.
    """
    value = str(text).strip().lower()
    if value == "auto":
        return "auto"
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise ConfigError(f"--points-per-pass {text!r} is not valid; use auto or a positive integer, e.g. 8")
    return number


def check_common_inputs(
    out: Path | None, source: dict[str, Any], *, chunk_size: int = 1, max_points: int | None = None
) -> None:
    """Refuse, before anything is loaded or written, what would fail later in the library's terms."""
    check_out_folder(out)
    batch_size = source.get("batch_size")
    if batch_size is not None:
        check_batch_size(batch_size)
    if chunk_size < 1:
        raise ConfigError(f"--chunk-size {chunk_size} must be >= 1 (grid points per rank between gathers)")
    if max_points is not None and max_points < 1:
        raise ConfigError(f"--max-points {max_points} must be >= 1, or left out to compute every point")


def compute_surface_file(checkpoint: Path, *, source: dict[str, Any], **kwargs: Any) -> Surface:
    """``surface_from_checkpoint`` with its errors and interruption said in the command's terms.

    Parameter names in library messages become flags in the group (:mod:`landscape.cli.flags`); a file made with other settings names ``-o``,
    ``--name`` and ``--overwrite``; Ctrl-C says how many points were saved (the library saves them
    before re-raising) and exits 130.
    """
    out = kwargs["out"]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NonFiniteLossWarning)  # said once by report_nonfinite
            return surface_from_checkpoint(checkpoint, source=CheckpointSource(**source), **kwargs)
    except SurfaceMismatchError as exc:
        raise ConfigError(
            f"{str(exc.path)!r} was computed with other settings (differs in: {', '.join(exc.differences)}); "
            "choose another -o/--out or --name, or add --overwrite to replace it"
        ) from None
    except KeyboardInterrupt:
        saved = ""
        if out is not None and Path(out).is_file():
            try:
                s = Surface.load(out)
                saved = f"; {s.num_done}/{s.done.size} points saved in {str(out)!r}, rerun to resume"
            except ResultFileError:  # only decorates the message; the rerun checks the file
                saved = ""
        click.echo(f"error: interrupted{saved}", err=True)
        sys.exit(130)


def report_nonfinite(surfaces: Sequence[Surface], paths: Sequence[Path | str]) -> None:
    """One warning line per surface with NaN or infinite losses (stderr)."""
    for s, p in zip(surfaces, paths):
        if s.num_nonfinite:
            click.echo(
                f"warning: {s.num_nonfinite} of {s.num_done} points of {str(p)!r} have a NaN or infinite "
                "loss; kept in the file, left out of the figures",
                err=True,
            )


def precision_line(precision: str, check: dict[str, Any]) -> str:
    """``precision bfloat16 vs float32 at 5 points: max |loss diff| 3.1e-04 (rel 1.2e-04), max
    |accuracy diff| 0.0039``: what the library's ``precision_check`` measured."""
    count = len(check.get("points", []))
    if not count:
        return f"precision {precision}: no check point computed yet (rerun to finish the surface)"
    acc = check.get("max_accuracy_diff")
    return (
        f"precision {precision} vs float32 at {count} point{'s' if count > 1 else ''}: "
        f"max |loss diff| {check['max_abs_diff']:.2e} (rel {check['max_rel_diff']:.2e})"
        + (f", max |accuracy diff| {acc:.4g}" if acc is not None else "")
    )


def echo_summary(surfaces: Sequence[Surface], surface_file: str | None, figures: Sequence[Path]) -> None:
    """Points done and the lowest loss of each surface, then the files written (stdout)."""
    for s in surfaces:
        d = s.to_dict()
        click.echo(
            f"points {d['points_done']}/{d['points_total']}"
            + (f"  min loss {d['loss_min']:.6g} at {d['loss_min_at']}" if "loss_min" in d else "")
        )
        if d.get("precision_check"):
            click.echo(precision_line(d["precision"], d["precision_check"]))
    if surface_file is not None:
        click.echo(f"surface  {surface_file}")
    for p in figures:
        click.echo(f"figure   {p}")
