"""``landscape plot1d``: a 1D loss curve (random direction, interpolation, Hessian eigenvector)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from landscape.cli.common import (
    echo_json,
    output_options,
    seed_option,
    source_options,
)
from landscape.cli.surface_common import (
    check_common_inputs,
    compute_surface_file,
    direction_options,
    echo_summary,
    evaluation_options,
    is_rank_zero,
    parse_points_per_pass,
    parse_range,
    report_nonfinite,
    save_figure,
)
from landscape.errors import ConfigError
from landscape.plot.surface import default_title, plot_surface_1d
from landscape.surface.builders import DIR_TYPES_1D
from landscape.surface.from_checkpoint import default_surface_name
from landscape.surface.store import Surface


@click.command()
@click.argument("checkpoint", required=False, type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--to",
    "to",
    default=None,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Second checkpoint: interpolate from CHECKPOINT (0) to it (1).",
)
@click.option(
    "--dir-type",
    default=None,
    type=click.Choice(DIR_TYPES_1D),
    help="Direction (default: interpolation with --to, else random).",
)
@click.option(
    "--x",
    "x_range",
    default="-1:1:51",
    show_default=True,
    metavar="MIN:MAX:NUM",
    help="Grid along the direction.",
)
@click.option("--log", is_flag=True, help="Logarithmic loss axis.")
@click.option("--no-accuracy", is_flag=True, help="Do not draw accuracy on the twin axis.")
@direction_options
@evaluation_options
@source_options
@seed_option
@output_options
def plot1d(
    checkpoint: Path | None,
    to: Path | None,
    dir_type: str | None,
    x_range: str,
    log: bool,
    no_accuracy: bool,
    norm: str,
    ignore: str,
    mode: str,
    bn: str,
    overwrite: bool,
    chunk_size: int,
    points_per_pass: str,
    precision: str,
    save_every: float,
    max_points: int | None,
    eigen_tol: float,
    name: str | None,
    label: str | None,
    formats: tuple[str, ...],
    from_files: tuple[Path, ...],
    seed: int,
    out: Path | None,
    as_json: bool,
    quiet: bool,
    source: dict[str, Any],
) -> None:
    """Loss and accuracy along one direction through CHECKPOINT, saved as a resumable surface file.

    Rerunning the same command resumes an interrupted run (Ctrl-C saves the points done); a surface
    file from other settings is refused (use --name, another -o, or --overwrite). Points with a NaN or
    infinite loss are kept in the file, counted in a warning and left out of the figure. With --to,
    --mode states (the default) moves batch-norm running means linearly and variances geometrically,
    so alpha = 0 and 1 are the two checkpoints and variances stay positive past both ends; --mode
    weights keeps CHECKPOINT's statistics everywhere, so alpha = 1 is not the --to checkpoint.
    Run under torchrun to split the grid across processes. Without -o, files go to the current
    folder (with --from: beside the first surface file).

    \b
    Examples:
      landscape plot1d runs/sgd/final.pt --x -1:1:51 --samples 2000 -o figs
      landscape plot1d a.pt --to b.pt --x -0.5:1.5:41 --mode states --split test -o figs
      landscape plot1d final.pt --dir-type eigen --x -0.2:0.2:41 --log
      landscape plot1d --from figs/sgd.npz --from figs/sam.npz --name compare -o figs --format pdf
      torchrun --nproc_per_node 4 -m landscape plot1d final.pt --x -1:1:201 -o figs
    """
    check_common_inputs(out, source, chunk_size=chunk_size, max_points=max_points)
    if from_files:
        if checkpoint is not None:
            raise ConfigError("give either CHECKPOINT (compute) or --from surface.npz (redraw), not both")
        out = out if out is not None else from_files[0].parent
        surfaces = [Surface.load(p) for p in from_files]
        stem = name or (from_files[0].stem if len(from_files) == 1 else "surface1d")
    else:
        if checkpoint is None:
            raise ConfigError("missing CHECKPOINT (or --from surface.npz to redraw a saved surface)")
        out = out if out is not None else Path(".")
        xs = parse_range(x_range, "--x")
        dir_type = dir_type or ("interpolation" if to is not None else "random")
        stem = name or default_surface_name(checkpoint, dir_type, 1)
        surfaces = [
            compute_surface_file(
                checkpoint,
                xs=xs,
                dir_type=dir_type,
                to=to,
                norm=norm,
                ignore=ignore,
                mode=mode,
                seed=seed,
                bn=bn,
                out=out / f"{stem}.npz",
                overwrite=overwrite,
                source=source,
                eigen_tol=eigen_tol,
                chunk_size=chunk_size,
                points_per_pass=parse_points_per_pass(points_per_pass),
                precision=precision,
                save_every=save_every,
                max_points=max_points,
                label=label,
                quiet=quiet,
            )
        ]
    if not is_rank_zero():
        return
    report_nonfinite(surfaces, from_files or [out / f"{stem}.npz"])
    figures = []
    if all(s.finite.any() for s in surfaces):
        fig = plot_surface_1d(
            surfaces,
            log=log,
            accuracy=not no_accuracy,
            labels=[label]
            if label and len(surfaces) == 1
            else [p.stem for p in from_files]
            if len(from_files) > 1
            else None,
            title=(label or default_title(surfaces[0])) if len(surfaces) == 1 else None,
        )
        figures = save_figure(fig, out, stem, formats)
    result = {
        "surface": str(out / f"{stem}.npz") if not from_files else [str(p) for p in from_files],
        "figures": [str(p) for p in figures],
        "surfaces": [{k: v for k, v in s.to_dict().items() if k != "metadata"} for s in surfaces],
    }
    if as_json:
        echo_json(result)
        return
    echo_summary(surfaces, None if from_files else result["surface"], figures)
