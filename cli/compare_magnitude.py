"""``landscape compare-magnitude`` (alias ``compare``): runs side by side and grouped over seeds.

SGD, SAM, SAM-direction and SAM-magnitude runs (or any runs of ``landscape train``/``sweep``): the
per-run table, then the groups of runs that differ only by seed with n, mean, std and 95% Student-t
intervals, and paired differences against a baseline group.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import click

from landscape.cli.common import SEED, echo_json, fail
from landscape.errors import ConfigError, LandscapeError
from landscape.runs import Comparison

# Library messages name Python parameters; on this command's line they are these flags.
_FLAGS = (
    (re.compile(r"\bsharpness_samples=(\S+)"), r"--sharpness \1"),
    (re.compile(r"\bsharpness_samples\b"), "--sharpness N"),
    (re.compile(r"\bmeasures=(\S+)"), r"--measure \1"),
    (re.compile(r"\bbaseline=(\S+)"), r"--baseline \1"),
    (re.compile(r"\binclude_unfinished=True"), "--include-unfinished"),
    # anchored: group labels in other messages hold "rho=0.05" too
    (re.compile(r"^mc_samples=(\S+)"), r"--mc-samples \1"),
    (re.compile(r"^rho=(\S+)"), r"--measure-rho \1"),
    (re.compile(r"^tol=(\S+)"), r"--tol \1"),
)
# The step statistics shown in the grouped table (late in training: where the methods differ).
_TABLE_METRICS = ("test_accuracy", "lambda_max", "frac_larger_late", "grad_norm_ratio_late")


def _to_flags(message: str) -> str:
    for pattern, flag in _FLAGS:
        message = pattern.sub(flag, message)
    from landscape.cli.main import as_flags  # main imports this module: import when needed

    return as_flags(message, "compare-magnitude")


def _options(f: Any) -> Any:
    """The options of ``compare-magnitude`` and its alias ``compare`` (one list, one callback)."""
    options = [
        click.argument("runs", type=click.Path(path_type=Path)),
        click.option(
            "--sharpness",
            "sharpness_samples",
            default=None,
            type=int,
            metavar="N",
            help="Also compute lambda_max of each final.pt on N training examples (Lanczos).",
        ),
        click.option(
            "--tol", default=1e-4, show_default=True, type=float, help="Lanczos relative residual tolerance."
        ),
        click.option(
            "--dtype",
            default=None,
            type=click.Choice(["float32", "float64"]),
            help="Precision of lambda_max and the measures (default: the checkpoint's).",
        ),
        click.option(
            "--measure",
            "measure",
            default=None,
            metavar="NAME[,NAME...]",
            help="Sharpness measures of each final.pt on the --sharpness sample (e.g. worst,average).",
        ),
        click.option(
            "--measure-rho", default=0.05, show_default=True, type=float, help="Radius of worst/average."
        ),
        click.option("--adaptive", is_flag=True, help="Measure perturbations in units of |w| (Kwon et al.)."),
        click.option(
            "--mc-samples", default=64, show_default=True, type=int, help="Monte Carlo draws of average."
        ),
        click.option(
            "--baseline",
            default=None,
            metavar="GROUP|OPTIMIZER|none",
            help="Group the others are paired with by seed (default: the SGD group, if there is one).",
        ),
        click.option(
            "--seed", default=0, show_default=True, type=SEED, help="Seed of the sample and start vector."
        ),
        click.option("--device", default="auto", show_default=True, metavar="auto|cpu|cuda|cuda:N|mps"),
        click.option(
            "-o",
            "--out",
            "out",
            default=None,
            type=click.Path(path_type=Path),
            help="Write tables and figures here.",
        ),
        click.option("--format", "fmt", default="png", show_default=True, type=click.Choice(["png", "pdf"])),
        click.option(
            "--no-figures", is_flag=True, help="Write the tables only (draw them later with --from)."
        ),
        click.option(
            "--from",
            "from_json",
            default=None,
            type=click.Path(path_type=Path),
            help="Redraw from a comparison.json (and the groups.json beside it) without recomputing.",
        ),
        click.option(
            "--include-unfinished",
            is_flag=True,
            help="Also compare runs without final.pt, with fewer epochs than asked, or diverged (NaN loss).",
        ),
        click.option("--json", "as_json", is_flag=True, help="Print the comparison and groups as JSON."),
        click.option("-q", "--quiet", is_flag=True, help="No progress bars."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _compare(
    runs: Path,
    sharpness_samples: int | None,
    tol: float,
    dtype: str | None,
    measure: str | None,
    measure_rho: float,
    adaptive: bool,
    mc_samples: int,
    baseline: str | None,
    seed: int,
    device: str,
    out: Path | None,
    fmt: str,
    no_figures: bool,
    from_json: Path | None,
    include_unfinished: bool,
    as_json: bool,
    quiet: bool,
) -> None:
    """Compare the runs under RUNS: does SAM win by the direction or by the size of its update?

    For each run of 'landscape train' or 'landscape sweep': final train/test loss and accuracy, the
    mean of ||g_SAM||/||g_SGD||, cos(g_SAM, g_SGD) and the fraction of coordinates with
    |g_SAM_i| > |g_SGD_i| over the first and last 10% of steps, lambda_max of the final checkpoint
    (with --sharpness N, or from a sharpness.json that 'landscape sharpness RUN/final.pt -o RUN' left
    in the run) and, with --measure, sharpness measures on the same sample.

    Runs that differ only by seed form a group: per group and metric n, mean, std and a 95% Student-t
    interval (groups.csv: <metric>_mean, _std, _ci95_low, _ci95_high); paired differences
    group - baseline over the seeds both have (paired.csv; --baseline sgd by default when there is
    one SGD group, --baseline none for none); groups.md in the seed study's layout (rows: method,
    columns: rho, cells mean ± std); groups.png with error bars and per-epoch bands. Folders with
    checkpoints but no config.json (other tools' runs) join as groups of their own.

    A stored sharpness.json is used only when it was made from the run's final weights (its
    checkpoint digest) with --which LA on the training set (and, with --sharpness N, on that sample,
    in --dtype when given, and for --measure with the same measure settings); otherwise the value is
    recomputed (--sharpness N) or left empty with a warning. comparison.json records, per run, where
    each value came from and its settings.

    Runs without final.pt, with fewer epochs in metrics.csv than their config.json asks (killed or
    failed) or with a final train loss that is not finite (diverged) are left out and listed with the
    count used; --include-unfinished compares them too. A metric some runs of a group lack (NaN) is
    averaged over the others: its own n is shown beside it (groups.csv: <metric>_n) with a warning.

    \b
    Examples:
      landscape sweep -o runs --optimizer sgd,sam,sam-direction,sam-magnitude --rho 0.05 --seeds 0,1,2
      landscape compare-magnitude runs/ --sharpness 512 -o runs/compare
      landscape compare runs/ --sharpness 512 --measure worst,average --adaptive -o runs/compare
      landscape compare-magnitude runs/ --from runs/compare/comparison.json -o runs/compare --format pdf
    """
    try:
        comparison, grouping = _read(
            runs,
            sharpness_samples=sharpness_samples,
            tol=tol,
            dtype=dtype,
            measure=measure,
            measure_rho=measure_rho,
            adaptive=adaptive,
            mc_samples=mc_samples,
            baseline=baseline,
            seed=seed,
            device=device,
            from_json=from_json,
            quiet=quiet,
            include_unfinished=include_unfinished,
        )
        _echo_warnings(comparison, grouping)
        for r in comparison.runs:
            if r.lambda_max_note:
                click.echo(f"warning: {r.lambda_max_note}", err=True)
        if out is not None:
            _write(out, comparison, grouping, None if no_figures else fmt, redraw=from_json is not None)
    except LandscapeError as exc:
        fail(_to_flags(str(exc)))
        return
    if as_json:
        doc = comparison.to_dict()
        if grouping is not None:
            doc["groups"] = grouping.to_dict()
        echo_json(doc)
        return
    if comparison.runs:
        _echo_table(comparison)
    if grouping is not None:
        if comparison.runs:
            click.echo("")
        _echo_groups(grouping)
    elif from_json is not None:
        click.echo(
            f"note: no groups.json beside {str(from_json)!r}: the grouped comparison is not redrawn", err=True
        )


def _read(
    runs: Path, *, from_json: Path | None, baseline: str | None, **kwargs: Any
) -> tuple[Comparison, Any]:
    """The per-run comparison and the grouping: from the files of an earlier run, or read/computed."""
    from landscape.runs.grouping import AUTO_BASELINE, Grouping, group_runs, read_comparison

    if from_json is not None:
        comparison = Comparison.load(from_json)
        groups_json = from_json.parent / "groups.json"
        return comparison, Grouping.from_json(groups_json) if groups_json.is_file() else None
    sharpness_samples = kwargs["sharpness_samples"]
    if sharpness_samples is not None and sharpness_samples < 1:
        raise ConfigError(
            f"--sharpness {sharpness_samples} must be a positive number of training examples, "
            "e.g. --sharpness 512"
        )
    if not kwargs["tol"] > 0:
        raise ConfigError(f"--tol {kwargs['tol']} must be > 0, e.g. --tol 1e-4")
    compare_kwargs: dict[str, Any] = {
        "sharpness_samples": sharpness_samples,
        "seed": kwargs["seed"],
        "device": kwargs["device"],
        "tol": kwargs["tol"],
        "quiet": kwargs["quiet"],
        "include_unfinished": kwargs["include_unfinished"],
    }
    if kwargs["dtype"] is not None:
        from landscape.device import resolve_dtype

        compare_kwargs["dtype"] = resolve_dtype(kwargs["dtype"])
    if kwargs["measure"] is not None:
        from landscape.measures import MeasureOptions

        compare_kwargs["measures"] = kwargs["measure"]
        compare_kwargs["measure_options"] = MeasureOptions(
            rho=kwargs["measure_rho"], adaptive=kwargs["adaptive"], mc_samples=kwargs["mc_samples"]
        )
    comparison = read_comparison(runs, **compare_kwargs)
    if baseline is None:
        baseline = AUTO_BASELINE
    elif baseline.lower() == "none":
        baseline = None
    grouping = group_runs(runs, baseline=baseline, comparison=comparison)
    return comparison, grouping


def _write(out: Path, comparison: Comparison, grouping: Any, fmt: str | None, *, redraw: bool) -> None:
    """Tables (unless redrawing) and figures in ``fmt`` (none for ``None``): the per-run figure and
    the grouped one."""
    from landscape.io.atomic import save_figure
    from landscape.plot.compare import plot_comparison
    from landscape.plot.groups import plot_groups

    if not redraw:
        comparison.save(out)
        if grouping is not None:
            grouping.save(out)
    if fmt is None:
        return
    figures = []
    if comparison.runs or grouping is None:
        figures.append(("comparison", plot_comparison(comparison)))
    if grouping is not None:
        figures.append(("groups", plot_groups(grouping)))
    for name, fig in figures:
        save_figure(fig, out / f"{name}.{fmt}", format=fmt)


def _echo_warnings(comparison: Comparison, grouping: Any) -> None:
    """On stderr: the runs left out (with the count used), a run holding runs, and the metrics whose
    mean uses fewer runs than their group has."""
    for w in comparison.warnings:
        click.echo(f"warning: {w}", err=True)
    if comparison.left_out:
        used, out = len(comparison.runs), len(comparison.left_out)
        click.echo(
            f"warning: {out} of {used + out} runs left out ({used} used; --include-unfinished to compare "
            "them too):",
            err=True,
        )
        for path, why in comparison.left_out.items():
            click.echo(f"  {path}: {why}", err=True)
    for g in [] if grouping is None else grouping.groups:
        short = {m: s.n for m, s in g.stats.items() if s.n < g.n and s.n > 0}
        for m, n in short.items():
            click.echo(
                f"warning: group {g.group!r}: {m} is averaged over {n} of its {g.n} runs (the others "
                "have no finite value)",
                err=True,
            )


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
    _echo_rows(header, rows)


def _echo_groups(grouping: Any) -> None:
    """Per group: n, then mean ± std and the 95% interval of the main metrics; then the paired
    differences of test accuracy and lambda_max against the baseline."""
    metrics = [m for m in _TABLE_METRICS if m in grouping.metrics]
    metrics += [m for m in grouping.metrics if m.startswith("sharpness_")]
    header = ("group", "n", *(h for m in metrics for h in (m, "95% CI")))
    rows = []
    for g in grouping.groups:
        cells: list[str] = [g.group, str(g.n)]
        for m in metrics:
            cells += _mean_std_ci(g.stats[m], g.n)
        rows.append(tuple(cells))
    _echo_rows(header, rows)
    paired = [p for p in grouping.paired if p.metric in ("test_accuracy", "lambda_max")]
    if paired:
        click.echo("")
        click.echo(f"paired by seed against {grouping.baseline!r} (group - baseline):")
        _echo_rows(
            ("group", "metric", "n", "mean ± std", "95% CI"),
            [(p.group, p.metric, str(p.stats.n), *_mean_std_ci(p.stats)) for p in paired],
        )


def _mean_std_ci(s: Any, group_n: int | None = None) -> list[str]:
    """``mean ± std`` (with ``(n=k)`` when the metric has fewer values than the group's ``group_n``)
    and the interval."""
    if not math.isfinite(s.mean):
        return ["", ""]
    text = f"{s.mean:.4g}" + (f" ± {s.std:.2g}" if math.isfinite(s.std) else "")
    if group_n is not None and s.n != group_n:
        text += f" (n={s.n})"
    ci = f"[{s.ci95_low:.4g}, {s.ci95_high:.4g}]" if math.isfinite(s.ci95_low) else ""
    return [text, ci]


def _echo_rows(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    click.echo("  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip())
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())


def _fmt(v: float | None) -> str:
    return "" if v is None else f"{v:.4f}"


_CONTEXT = {"help_option_names": ["-h", "--help"]}
compare_magnitude = click.command("compare-magnitude", context_settings=_CONTEXT)(_options(_compare))
#: The short alias ``landscape compare``: the same options and callback.
compare = click.command("compare", context_settings=_CONTEXT)(_options(_compare))
