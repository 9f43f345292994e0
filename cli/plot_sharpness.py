"""``landscape plot-sharpness RUN...``: sharpness during training (RUN/sharpness.csv, RUN/steps.csv)."""

from __future__ import annotations

from pathlib import Path

import click

from landscape.errors import ConfigError
from landscape.io.atomic import atomic_path
from landscape.plot.sharpness_track import plot_sharpness_track
from landscape.training.sharpness_tracking import read_history

FORMATS = ("png", "pdf", "svg")


@click.command("plot-sharpness")
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path, file_okay=False))
@click.option(
    "-o",
    "--out",
    default=None,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Figure file, .png/.pdf/.svg (default: RUN/sharpness.png for one run, sharpness.png for several).",
)
@click.option(
    "--label", "labels", multiple=True, help="Legend label of each RUN, in order (default: folder name)."
)
@click.option("--title", default=None, help="Title of the figure.")
@click.option("--log-loss", is_flag=True, help="Logarithmic training-loss axis.")
def plot_sharpness(
    runs: tuple[Path, ...], out: Path | None, labels: tuple[str, ...], title: str | None, log_loss: bool
) -> None:
    """Sharpness lambda_max against steps with its stability threshold, training loss below.

    Reads RUN/sharpness.csv (written by 'landscape train --track-sharpness EVERY') and RUN/steps.csv;
    several RUNs are overlaid. Adam-type runs also show the preconditioned sharpness and its threshold.

    \b
    Examples:
      landscape plot-sharpness runs/gd-lr0.1
      landscape plot-sharpness runs/gd-lr0.1 runs/gd-lr0.2 --label "lr 0.1" --label "lr 0.2" -o eos.pdf
    """
    if labels and len(labels) != len(runs):
        raise ConfigError(
            f"--label was given {len(labels)} times for {len(runs)} runs; give one per RUN or none"
        )
    if out is None:
        out = runs[0] / "sharpness.png" if len(runs) == 1 else Path("sharpness.png")
    fmt = out.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise ConfigError(f"-o/--out {str(out)!r} must end in one of {', '.join('.' + f for f in FORMATS)}")
    histories = [read_history(run, label=labels[i] if labels else None) for i, run in enumerate(runs)]
    fig = plot_sharpness_track(histories, title=title, log_loss=log_loss)
    with atomic_path(out, suffix=f".{fmt}") as tmp:
        fig.savefig(tmp, format=fmt, dpi=150)
    click.echo(str(out))
