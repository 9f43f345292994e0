"""``landscape plot1d``: a 1D loss curve (random direction, interpolation, Hessian eigenvector)."""

from __future__ import annotations

from pathlib import Path

import click

from landscape.cli.surface_common import (
    SurfaceJob,
    is_rank_zero,
    parse_range,
    report_nonfinite,
    save_figure,
    summaries,
    surface_options,
)
from landscape.plot.surface import default_title, plot_surface_1d
from landscape.surface.builders import DIR_TYPES_1D
from landscape.surface.from_checkpoint import default_surface_name


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
@surface_options
def plot1d(
    checkpoint: Path | None,
    to: Path | None,
    dir_type: str | None,
    x_range: str,
    log: bool,
    no_accuracy: bool,
    job: SurfaceJob,
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
    job.check(checkpoint)
    from_files = job.from_files
    if from_files:
        out = job.out if job.out is not None else from_files[0].parent
        surfaces = job.load()
        stem = job.name or (from_files[0].stem if len(from_files) == 1 else "surface1d")
    else:
        assert checkpoint is not None  # job.check refuses neither CHECKPOINT nor --from
        out = job.out if job.out is not None else Path(".")
        xs = parse_range(x_range, "--x")
        dir_type = dir_type or ("interpolation" if to is not None else "random")
        stem = job.name or default_surface_name(checkpoint, dir_type, 1)
        surfaces = [job.compute(checkpoint, out / f"{stem}.npz", xs=xs, dir_type=dir_type, to=to)]
    if not is_rank_zero():
        return
    report_nonfinite(surfaces, from_files or [out / f"{stem}.npz"])
    figures = []
    label = job.label
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
        figures = save_figure(fig, out, stem, job.formats)
    result = {
        "surface": str(out / f"{stem}.npz") if not from_files else [str(p) for p in from_files],
        "figures": [str(p) for p in figures],
        "surfaces": summaries(surfaces),
    }
    job.finish(surfaces, out / f"{stem}.npz", figures, result)
