"""``landscape compare-magnitude``: SGD, SAM, SAM-direction and SAM-magnitude runs side by side."""

from __future__ import annotations

from pathlib import Path

import click

from landscape.cli.common import SEED, echo_json
from landscape.errors import ConfigError
from landscape.runs import Comparison, compare_runs


@click.command("compare-magnitude")
@click.argument("runs", type=click.Path(path_type=Path))
@click.option(
    "--sharpness",
    "sharpness_samples",
    default=None,
    type=int,
    metavar="N",
    help="Also compute lambda_max of each final.pt on N training examples (Lanczos).",
)
@click.option(
    "--tol", default=1e-4, show_default=True, type=float, help="Lanczos relative residual tolerance."
)
@click.option("--seed", default=0, show_default=True, type=SEED, help="Seed of the sample and start vector.")
@click.option("--device", default="auto", show_default=True, metavar="auto|cpu|cuda|cuda:N|mps")
@click.option(
    "-o", "--out", "out", default=None, type=click.Path(path_type=Path), help="Write table and figure here."
)
@click.option("--format", "fmt", default="png", show_default=True, type=click.Choice(["png", "pdf"]))
@click.option(
    "--from",
    "from_json",
    default=None,
    type=click.Path(path_type=Path),
    help="Redraw from a comparison.json.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
def compare_magnitude(
    runs: Path,
    sharpness_samples: int | None,
    tol: float,
    seed: int,
    device: str,
    out: Path | None,
    fmt: str,
    from_json: Path | None,
    as_json: bool,
    quiet: bool,
) -> None:
    """Compare the runs under RUNS: does SAM win by the direction or by the size of its update?

    For each run of 'landscape train': final train/test loss and accuracy, the mean of
    ||g_SAM||/||g_SGD||, cos(g_SAM, g_SGD) and the fraction of coordinates with |g_SAM_i| > |g_SGD_i|
    over the first and last 10% of steps, and lambda_max of the final checkpoint (with --sharpness N,
    or from a sharpness.json that 'landscape sharpness RUN/final.pt -o RUN' left in the run).

    A stored sharpness.json is used only when it was made from the run's final weights (its
    checkpoint digest) with --which LA on the training set (and, with --sharpness N, on that sample);
    otherwise lambda_max is recomputed (--sharpness N) or left empty with a warning. comparison.json
    records, per run, where lambda_max came from and its settings.

    \b
    Examples:
      for opt in sgd sam sam-direction sam-magnitude; do landscape train --optimizer $opt -o runs/$opt; done
      landscape compare-magnitude runs/ --sharpness 512 -o runs/compare
      landscape compare-magnitude runs/ --from runs/compare/comparison.json -o runs/compare --format pdf
    """
    if sharpness_samples is not None and sharpness_samples < 1:
        raise ConfigError(
            f"--sharpness {sharpness_samples} must be a positive number of training examples, "
            "e.g. --sharpness 512"
        )
    if not tol > 0:
        raise ConfigError(f"--tol {tol} must be > 0, e.g. --tol 1e-4")
    comparison = (
        Comparison.load(from_json)
        if from_json is not None
        else compare_runs(
            runs, sharpness_samples=sharpness_samples, seed=seed, device=device, tol=tol, quiet=quiet
        )
    )
    for r in comparison.runs:
        if r.lambda_max_note:
            click.echo(f"warning: {r.lambda_max_note}", err=True)
    if out is not None:
        from landscape.io.atomic import atomic_path
        from landscape.plot.compare import plot_comparison

        if from_json is None:
            comparison.save(out)
        fig = plot_comparison(comparison)
        with atomic_path(out / f"comparison.{fmt}", suffix=f".{fmt}") as tmp:
            fig.savefig(tmp, format=fmt, dpi=120)
    if as_json:
        echo_json(comparison.to_dict())
        return
    _echo_table(comparison)


def _echo_table(comparison: Comparison) -> None:
    """The comparison as an aligned text table on stdout."""
    header = (
        "run",
        "optimizer",
        "test_acc",
        "train_loss",
        "lambda_max",
        "frac>_early",
        "frac>_late",
        "ratio_mean",
    )
    rows = [
        (
            r.name,
            r.optimizer,
            f"{r.test_accuracy:.4f}",
            f"{r.train_loss:.4g}",
            "" if r.lambda_max is None else f"{r.lambda_max:.5g}",
            _fmt(r.stats_early.get("frac_larger")),
            _fmt(r.stats_late.get("frac_larger")),
            _fmt(r.stats_mean.get("grad_norm_ratio")),
        )
        for r in comparison.runs
    ]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    click.echo("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths)))


def _fmt(v: float | None) -> str:
    return "" if v is None else f"{v:.4f}"
