"""``landscape connect``: linear and curved paths between two checkpoints, barriers, weight matching."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from landscape.cli.common import echo_json, fail, output_options, seed_option, source_options
from landscape.cli.flags import as_flags
from landscape.cli.surface_common import save_figure
from landscape.connect.api import RESULT_NAME, connect_checkpoints
from landscape.errors import LandscapeError
from landscape.plot.connect import plot_connect


def to_flags(message: str) -> str:
    """``points=1 must be ...`` -> ``--points 1 must be ...``; ``overwrite=True`` -> ``--overwrite``."""
    return as_flags(message, "connect")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("a", type=click.Path(path_type=Path))
@click.argument("b", type=click.Path(path_type=Path))
@click.option(
    "--points", default=21, show_default=True, type=int, help="Positions in [0, 1], both ends included."
)
@click.option(
    "--bn",
    default=None,
    metavar="recalibrate|states",
    help="Batch norm at each point: re-estimate the running statistics on the training data (default for "
    "models with batch norm) or interpolate them with the weights (states; curves always recalibrate).",
)
@click.option(
    "--curve",
    default=None,
    metavar="bezier|polychain",
    help="Also train a curve through one control point (Garipov et al. 2018) and evaluate it.",
)
@click.option("--epochs", default=10, show_default=True, type=int, help="Curve training epochs.")
@click.option("--lr", default=0.05, show_default=True, type=float, help="Curve training learning rate (SGD).")
@click.option(
    "--align",
    default=None,
    metavar="weight-matching",
    help="Permute B's hidden units onto A's first (Ainsworth et al. 2023); writes DIR/<B>_aligned.pt.",
)
@click.option(
    "--overwrite", is_flag=True, help="Replace a result or curve state in DIR computed with other settings."
)
@click.option(
    "--format",
    "formats",
    multiple=True,
    default=("png",),
    show_default=True,
    type=click.Choice(["png", "pdf"]),
    help="Figure format (repeat for both).",
)
@source_options
@seed_option
@output_options
def connect(
    a: Path,
    b: Path,
    points: int,
    bn: str | None,
    curve: str | None,
    epochs: int,
    lr: float,
    align: str | None,
    overwrite: bool,
    formats: tuple[str, ...],
    seed: int,
    out: Path | None,
    as_json: bool,
    quiet: bool,
    source: dict[str, Any],
) -> None:
    """Are checkpoints A and B in one basin? Loss, accuracy and barriers along paths from A to B.

    Writes DIR/connect.json ("linear", and "bezier"/"polychain" with --curve, "linear_unaligned"
    with --align: positions, loss, accuracy, barrier_loss, barrier_error and where each is attained)
    and DIR/connect.png. The barrier is max_alpha L(alpha) - ((1-alpha) L(0) + alpha L(1)) (Frankle et
    al. 2020), for the loss and the error. Losses are measured on --split (default train); batch-norm
    recalibration and curve training use the training split. A curve run resumes from DIR/<curve>_state.pt.

    \b
    Examples:
      landscape connect a.pt b.pt -o conn --points 21
      landscape connect a.pt b.pt -o conn --align weight-matching --split test
      landscape connect a.pt b.pt -o conn --curve bezier --epochs 20 --lr 0.05 --seed 1
      landscape connect a.pt b.pt -o conn --bn states --format png --format pdf
    """
    out = out if out is not None else Path(".")
    try:
        result = connect_checkpoints(
            a,
            b,
            points=points,
            bn=bn,
            curve=curve,
            epochs=epochs,
            lr=lr,
            align=align,
            out=out,
            overwrite=overwrite,
            seed=seed,
            quiet=quiet or as_json,
            **source,
        )
    except LandscapeError as exc:
        fail(to_flags(str(exc)))
        return
    figures = save_figure(plot_connect(result), out, "connect", formats)
    d = result.to_dict()
    if as_json:
        echo_json({**d, "result": str(out / RESULT_NAME), "figures": [str(p) for p in figures]})
        return
    for kind, path in result.paths.items():
        bars = path.barriers()
        click.echo(
            f"{kind:<17} barrier loss {bars['barrier_loss']:.4g} (at {bars['barrier_loss_at']:.3g})  "
            f"error {bars['barrier_error']:.4g} (at {bars['barrier_error_at']:.3g})  "
            f"passes {path.passes}  {path.seconds:.1f} s"
        )
    click.echo(f"batch norm  {result.metadata['bn']}")
    click.echo(f"result      {out / RESULT_NAME}")
    if "b_aligned" in result.metadata:
        click.echo(f"aligned B   {result.metadata['b_aligned']}")
    for p in figures:
        click.echo(f"figure      {p}")
