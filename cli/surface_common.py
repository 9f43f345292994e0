"""Options and output helpers shared by ``landscape plot1d`` and ``landscape plot2d``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from cli.common import _compose
from landscape.io.atomic import atomic_path

direction_options = _compose(
    click.option(
        "--norm",
        default="filter",
        show_default=True,
        type=click.Choice(["filter", "layer", "model", "none"]),
        help="Normalization of random directions (Li et al. 2018 filter normalization by default).",
    ),
    click.option(
        "--ignore",
        default="biasbn",
        show_default=True,
        type=click.Choice(["biasbn", "none"]),
        help="biasbn: 1-D tensors (biases, norm layers) do not move; none: they move too.",
    ),
    click.option(
        "--mode",
        default=None,
        type=click.Choice(["weights", "states"]),
        help="states: batch-norm running statistics move along the direction too "
        "(default: states between checkpoints, --to/--ckpts, so each lands exactly on its checkpoint; else weights).",
    ),
)

evaluation_options = _compose(
    click.option(
        "--bn",
        default="fixed",
        show_default=True,
        type=click.Choice(["fixed", "recalibrate"]),
        help="Batch norm: keep the running statistics, or re-estimate them on the data at each point.",
    ),
    click.option("--overwrite", is_flag=True, help="Replace a surface file computed with other settings."),
    click.option(
        "--chunk-size", default=8, show_default=True, type=int, help="Grid points per rank between gathers."
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
    click.option("--name", default=None, help="Base name of the surface file and figures."),
    click.option("--label", default=None, help="Legend label (default: the checkpoint's file name)."),
    click.option(
        "--format",
        "formats",
        multiple=True,
        default=("png",),
        show_default=True,
        type=click.Choice(["png", "pdf"]),
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


def is_rank_zero() -> bool:
    """Only rank 0 of a ``torchrun`` job draws and prints."""
    return int(os.environ.get("RANK", "0")) == 0


def save_figure(fig: Any, out: Path, stem: str, formats: Sequence[str]) -> list[Path]:
    """Write a figure atomically in every format; returns the paths."""
    paths = []
    for fmt in formats:
        path = out / f"{stem}.{fmt}"
        with atomic_path(path, suffix=f".{fmt}") as tmp:
            fig.savefig(tmp, format=fmt, dpi=150)
        paths.append(path)
    return paths
