"""Figures of a grouped comparison across seeds, drawn from a :class:`~landscape.runs.grouping.Grouping`.

Each group is a point at its mean with a 95% Student-t error bar and its seeds as small dots; the
value axis fits the data (not 0-1), so differences of a fraction of a percent stay visible. The step
statistics are drawn against the epoch with a band of the interval across seeds; paired differences
against zero with their intervals.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from landscape.measures.registry import measure_label, measure_names
from landscape.plot.axes import figure_and_axes
from landscape.runs.grouping import Grouping, step_bands

_LABELS = {
    "test_accuracy": "test accuracy",
    "train_accuracy": "train accuracy",
    "test_loss": "test loss",
    "train_loss": "train loss",
    "lambda_max": r"$\lambda_{\max}$ of the Hessian",
    "trace": "tr(H)",
    "grad_norm_ratio": r"$\|g_{SAM}\| / \|g_{SGD}\|$",
    "cosine": r"cos($g_{SAM}$, $g_{SGD}$)",
    "frac_larger": r"fraction of $|g_{SAM,i}| > |g_{SGD,i}|$",
    **{f"sharpness_{name}": measure_label(name) for name in measure_names()},
}


def plot_group_metric(
    grouping: Grouping,
    metric: str = "test_accuracy",
    *,
    ax: Axes | None = None,
    groups: Sequence[str] | None = None,
) -> Figure:
    """``metric`` per group: mean with its 95% t-interval, and each seed's value as a dot.

    Groups without a finite value are left out; a group of one run has no bar.

    Args:
        grouping: from :func:`landscape.runs.grouping.group_runs`.
        metric: one of ``grouping.metrics``.
        ax: draw into this axis (default: a new figure).
        groups: the group labels to draw, in this order (default: all).
    """
    labels = list(groups) if groups is not None else [g.group for g in grouping.groups]
    fig, ax = figure_and_axes(ax, (max(4.0, 0.9 * len(labels) + 1.5), 3.8))
    members: dict[str, list[float]] = {}
    for r in grouping.runs:
        v = r.metrics.get(metric, float("nan"))
        if math.isfinite(v):
            members.setdefault(r.group, []).append(v)
    drawn = []
    for label in labels:
        s = grouping.group(label).stats.get(metric)
        if s is None or not math.isfinite(s.mean):
            continue
        x = len(drawn)
        drawn.append(label)
        if math.isfinite(s.ci95_low):
            err = [[s.mean - s.ci95_low], [s.ci95_high - s.mean]]
            ax.errorbar([x], [s.mean], yerr=err, fmt="o", color="C0", capsize=4, lw=1.5)
        else:
            ax.plot([x], [s.mean], "o", color="C0")
        seeds = members.get(label, [])
        ax.plot(np.full(len(seeds), x + 0.12), seeds, ".", color="0.45", ms=5)
    if not drawn:
        ax.text(0.5, 0.5, f"no run recorded {metric}", ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks(range(len(drawn)), drawn, rotation=30, ha="right", fontsize="small")
    ax.set_xlim(-0.5, max(len(drawn), 1) - 0.5)
    ax.set_ylabel(_LABELS.get(metric, metric))
    ax.set_title(f"{_LABELS.get(metric, metric)} (mean, 95% CI; dots: seeds)", fontsize="medium")
    ax.grid(axis="y", lw=0.4, alpha=0.6)
    return fig


def plot_group_panels(grouping: Grouping, metrics: Sequence[str] = ("test_accuracy", "lambda_max")) -> Figure:
    """One :func:`plot_group_metric` panel per metric, side by side."""
    fig = Figure(
        figsize=(max(4.0, 0.9 * len(grouping.groups) + 1.5) * len(metrics), 4.2), layout="constrained"
    )
    for ax, metric in zip(fig.subplots(1, len(metrics), squeeze=False)[0], metrics):
        plot_group_metric(grouping, metric, ax=ax)
    return fig


def plot_paired_differences(
    grouping: Grouping, metric: str = "lambda_max", *, ax: Axes | None = None
) -> Figure:
    """The paired differences ``group - baseline`` (by seed) of ``metric``: each mean with its 95%
    t-interval against zero, red where the interval excludes zero."""
    chosen = [p for p in grouping.paired if p.metric == metric]
    fig, ax = figure_and_axes(ax, (10.0, 0.45 * len(chosen) + 1.6))
    for i, p in enumerate(chosen):
        s = p.stats
        has_interval = math.isfinite(s.ci95_low) and math.isfinite(s.ci95_high)
        color = "C3" if has_interval and (s.ci95_low > 0 or s.ci95_high < 0) else "C7"
        if has_interval:
            err = [[s.mean - s.ci95_low], [s.ci95_high - s.mean]]
            ax.errorbar([s.mean], [i], xerr=err, fmt="o", color=color, capsize=3)
        elif math.isfinite(s.mean):
            ax.plot([s.mean], [i], "o", color=color)
    ax.axvline(0.0, color="k", lw=0.8)
    ax.set_yticks(range(len(chosen)), [f"{p.group}  -  {p.baseline}" for p in chosen], fontsize="small")
    ax.invert_yaxis()
    ax.set_xlabel(f"difference of {_LABELS.get(metric, metric)} (paired by seed)")
    ax.set_title("paired differences with 95% t-intervals (red: excludes 0)", fontsize="medium")
    ax.grid(axis="x", alpha=0.3)
    return fig


def plot_test_accuracy(grouping: Grouping, *, ax: Axes | None = None) -> Figure:
    """Test accuracy per group with 95% intervals, on an axis fitted to the values (not 0-1)."""
    return plot_group_metric(grouping, "test_accuracy", ax=ax)


def plot_lambda_max(grouping: Grouping, *, ax: Axes | None = None) -> Figure:
    """``lambda_max`` of each group's final checkpoints with 95% intervals."""
    return plot_group_metric(grouping, "lambda_max", ax=ax)


def plot_step_statistic(
    grouping: Grouping, statistic: str = "grad_norm_ratio", *, ax: Axes | None = None
) -> Figure:
    """A step statistic of SAM against SGD per epoch: each group's mean over seeds with its 95% band."""
    fig, ax = figure_and_axes(ax, (6.0, 4.0))
    bands = step_bands(grouping, statistic)
    for i, band in enumerate(bands):
        color = f"C{i % 10}"
        ax.plot(band.epoch, band.mean, marker="o", ms=3, color=color, label=f"{band.group} (n={max(band.n)})")
        low, high = np.asarray(band.ci95_low), np.asarray(band.ci95_high)
        ok = np.isfinite(low) & np.isfinite(high)
        if ok.any():
            ax.fill_between(np.asarray(band.epoch)[ok], low[ok], high[ok], color=color, alpha=0.2, lw=0)
    if statistic == "grad_norm_ratio":
        ax.axhline(1.0, color="k", lw=0.5, ls=":")
    if statistic == "frac_larger":
        ax.axhline(0.5, color="k", lw=0.5, ls=":")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(_LABELS.get(statistic, statistic))
    ax.set_title(f"{_LABELS.get(statistic, statistic)} per epoch (band: 95% CI)", fontsize="medium")
    if bands:  # the reference line alone has no label
        ax.legend(fontsize="small")
    else:
        ax.text(0.5, 0.5, "no SAM-family runs", ha="center", va="center", transform=ax.transAxes)
    return fig


def measure_metrics(grouping: Grouping) -> list[str]:
    """The sharpness measures (``sharpness_<name>``) some group has a finite mean of, in column order."""
    return [
        m
        for m in grouping.metrics
        if m.startswith("sharpness_") and any(math.isfinite(g.stats[m].mean) for g in grouping.groups)
    ]


def plot_groups(grouping: Grouping) -> Figure:
    """The summary figure: test accuracy, lambda_max, the three step statistics per epoch and the test
    loss per group, then a row (or more) with each sharpness measure the runs have."""
    extra = measure_metrics(grouping)
    rows = 2 + math.ceil(len(extra) / 3)
    fig = Figure(figsize=(15.0, 4.0 * rows), layout="constrained")
    axes = fig.subplots(rows, 3, squeeze=False)
    plot_test_accuracy(grouping, ax=axes[0][0])
    plot_lambda_max(grouping, ax=axes[0][1])
    for ax, stat in zip((axes[0][2], axes[1][0], axes[1][1]), ("grad_norm_ratio", "cosine", "frac_larger")):
        plot_step_statistic(grouping, stat, ax=ax)
    plot_group_metric(grouping, "test_loss", ax=axes[1][2])
    cells = [ax for row in axes[2:] for ax in row]
    for ax, metric in zip(cells, extra):
        plot_group_metric(grouping, metric, ax=ax)
    for ax in cells[len(extra) :]:
        fig.delaxes(ax)
    fig.suptitle(
        f"{len(grouping.runs)} runs in {len(grouping.groups)} groups; intervals: Student t over seeds"
    )
    return fig
