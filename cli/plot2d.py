"""``landscape plot2d``: a 2D loss surface (random plane, three-checkpoint plane, PCA, eigenvectors)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
from landscape.errors import ConfigError
from landscape.plot.surface import KINDS_2D, default_title, plot_surface_2d, shared_limits
from landscape.surface.builders import DIR_TYPES_2D
from landscape.surface.from_checkpoint import default_surface_name

DEFAULT_RANGE = "-1:1:51"


@click.command()
@click.argument("checkpoint", required=False, type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--dir-type",
    default=None,
    type=click.Choice(DIR_TYPES_2D),
    help="Directions (default: plane with --ckpts, pca with --trajectory, else random).",
)
@click.option(
    "--ckpts",
    nargs=2,
    default=None,
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="B C",
    help="Plane through CHECKPOINT (0,0), B (1,0) and C (0,1).",
)
@click.option(
    "--trajectory",
    default=None,
    type=click.Path(path_type=Path, file_okay=False),
    help="Folder of checkpoints: PCA directions and the projected path.",
)
@click.option(
    "--x",
    "x_range",
    default=None,
    metavar="MIN:MAX:NUM",
    help="Grid along the first direction (default -1:1:51; with --trajectory and no --x/--y: the "
    "projected path's extent, 51 points).",
)
@click.option(
    "--y",
    "y_range",
    default=None,
    metavar="MIN:MAX:NUM",
    help="Grid along the second direction (default -1:1:51).",
)
@click.option(
    "--kind",
    "kinds",
    multiple=True,
    default=("contour",),
    show_default=True,
    type=click.Choice(KINDS_2D),
    help="Figure kind (repeat for several).",
)
@click.option("--levels", default=30, show_default=True, type=int, help="Number of contour levels.")
@click.option("--linear", is_flag=True, help="Linearly spaced levels and colour scale (default: log-spaced).")
@click.option(
    "--vmin", default=None, type=float, help="Lower end of the colour scale (share it across models)."
)
@click.option("--vmax", default=None, type=float, help="Upper end of the colour scale.")
@surface_options
def plot2d(
    checkpoint: Path | None,
    dir_type: str | None,
    ckpts: tuple[Path, Path] | None,
    trajectory: Path | None,
    x_range: str | None,
    y_range: str | None,
    kinds: tuple[str, ...],
    levels: int,
    linear: bool,
    vmin: float | None,
    vmax: float | None,
    job: SurfaceJob,
) -> None:
    """Loss over a plane through CHECKPOINT, saved as a resumable surface file, drawn as contours.

    Rerunning the same command resumes an interrupted run (Ctrl-C saves the points done); a surface
    file from other settings is refused (use --name, another -o, or --overwrite). Points with a NaN
    or infinite loss are kept in the file, counted in a warning and left out of the contours.
    Several --from files share one colour scale unless --vmin/--vmax; without -o their figures go
    beside each surface file (computing without -o: the current folder).

    \b
    Examples:
      landscape plot2d final.pt --x -1:1:51 --y -1:1:51 --samples 2000 -o figs
      landscape plot2d final.pt --x -1:1.5:41 --y -0.5:0.5:21 --kind filled --kind surface3d
      landscape plot2d a.pt --ckpts b.pt c.pt --x -0.5:1.5:41 --y -0.5:1.5:41 --mode states
      landscape plot2d runs/sgd/final.pt --trajectory runs/sgd/ckpts --kind contour -o figs
      landscape plot2d --from figs/sgd.npz --from figs/sam.npz --kind heatmap --format pdf
      torchrun --nproc_per_node 4 -m landscape plot2d final.pt --bn recalibrate -o figs
    """
    job.check(checkpoint)
    if levels < 2:
        raise ConfigError(f"--levels {levels} must be >= 2 (contour levels)")
    from_files, name, out = job.from_files, job.name, job.out
    if from_files:
        surfaces = job.load()
        stems = [name if name and len(from_files) == 1 else p.stem for p in from_files]
        folders = [out if out is not None else p.parent for p in from_files]
    else:
        assert checkpoint is not None  # job.check refuses neither CHECKPOINT nor --from
        xs = parse_range(x_range or DEFAULT_RANGE, "--x")
        ys = parse_range(y_range or DEFAULT_RANGE, "--y")
        if dir_type is None:
            dir_type = "plane" if ckpts else "pca" if trajectory is not None else "random"
        stems = [name or default_surface_name(checkpoint, dir_type, 2)]
        folders = [out if out is not None else Path(".")]
        grid = {"xs": xs, "ys": ys, "fit_path": x_range is None and y_range is None, "dir_type": dir_type}
        paths = {"ckpts": list(ckpts) if ckpts else None, "trajectory": trajectory}
        surfaces = [job.compute(checkpoint, folders[0] / f"{stems[0]}.npz", **grid, **paths)]
    if not is_rank_zero():
        return
    for s in surfaces:
        if s.ndim != 2:
            raise ConfigError("a --from file holds a 1D surface; redraw it with 'landscape plot1d --from'")
    report_nonfinite(surfaces, from_files or [folders[0] / f"{stems[0]}.npz"])
    figures: list[Path] = []
    if all(s.finite.any() for s in surfaces):
        if len(surfaces) > 1 and vmin is None and vmax is None:
            vmin, vmax = shared_limits(surfaces)
        for s, stem, folder in zip(surfaces, stems, folders):
            for kind in kinds:
                style: dict[str, Any] = {"levels": levels, "log": not linear, "vmin": vmin, "vmax": vmax}
                fig = plot_surface_2d(s, kind=kind, title=job.label or default_title(s), **style)
                figures += save_figure(fig, folder, f"{stem}_{kind}", job.formats)
    result = {
        "surfaces": summaries(surfaces),
        "files": [str(p) for p in from_files] or [str(folders[0] / f"{stems[0]}.npz")],
        "figures": [str(p) for p in figures],
    }
    job.finish(surfaces, folders[0] / f"{stems[0]}.npz", figures, result)
