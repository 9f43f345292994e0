"""Figures of grouped results: group means with 95% intervals, and paired differences against zero.

Drawn from the plain tables of :mod:`landscape.studies.demo` (``groups``: one dict per group with
``<metric>_mean`` and ``<metric>_ci95_low/_high``; ``rows``: one dict per run; ``paired``: one dict per
comparison and metric with ``mean``, ``ci95_low``, ``ci95_high``). Nothing is computed here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from matplotlib.figure import Figure

LABELS = {
    "test_accuracy": "test accuracy",
    "test_loss": "test loss",
    "train_loss": "train loss",
    "lambda_max": "lambda_max (Hessian)",
    "trace": "trace of the Hessian",
}


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def plot_group_intervals(
    groups: Sequence[dict[str, Any]],
    *,
    rows: Sequence[dict[str, Any]] | None = None,
    metrics: Sequence[str] = ("test_accuracy", "lambda_max", "trace"),
) -> Figure:
    """One panel per metric: each group's mean with its 95% t-interval, and each seed as a dot.

    The value axis fits the data (accuracy is not drawn on 0-1), so differences between groups show.
    """
    names = [g["group"] for g in groups]
    fig = Figure(figsize=(4.2 * len(metrics), 0.45 * len(names) + 1.6), layout="constrained")
    axes = fig.subplots(1, len(metrics), sharey=True, squeeze=False)[0]
    for ax, metric in zip(axes, metrics):
        for i, g in enumerate(groups):
            mean, lo, hi = g[f"{metric}_mean"], g[f"{metric}_ci95_low"], g[f"{metric}_ci95_high"]
            color = f"C{i % 10}"
            if _finite(lo) and _finite(hi):
                ax.errorbar(mean, i, xerr=[[mean - lo], [hi - mean]], fmt="o", color=color, capsize=3)
            elif _finite(mean):
                ax.plot(mean, i, "o", color=color)
            if rows is not None:
                seeds = [r[metric] for r in rows if r["group"] == g["group"] and _finite(r[metric])]
                ax.plot(seeds, [i + 0.18] * len(seeds), ".", color=color, alpha=0.5, ms=5)
        ax.set_title(LABELS.get(metric, metric))
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(names)), names)
    axes[0].invert_yaxis()
    fig.suptitle("mean and 95% t-interval over seeds (dots: single seeds)", fontsize="medium")
    return fig


def plot_paired_differences(paired: Sequence[dict[str, Any]], *, metric: str = "lambda_max") -> Figure:
    """Paired differences ``a - b`` (by seed) of one metric with their 95% intervals, against zero."""
    chosen = [p for p in paired if p["metric"] == metric]
    fig = Figure(figsize=(10.0, 0.45 * len(chosen) + 1.6), layout="constrained")
    ax = fig.add_subplot()
    for i, p in enumerate(chosen):
        mean, lo, hi = p["mean"], p["ci95_low"], p["ci95_high"]
        excludes_zero = _finite(lo) and _finite(hi) and (lo > 0 or hi < 0)
        color = "C3" if excludes_zero else "C7"
        if _finite(lo) and _finite(hi):
            ax.errorbar(mean, i, xerr=[[mean - lo], [hi - mean]], fmt="o", color=color, capsize=3)
        elif _finite(mean):
            ax.plot(mean, i, "o", color=color)
    ax.axvline(0.0, color="k", lw=0.8)
    ax.set_yticks(range(len(chosen)), [f"{p['a']}  -  {p['b']}" for p in chosen], fontsize="small")
    ax.invert_yaxis()
    ax.set_xlabel(f"difference of {LABELS.get(metric, metric)} (paired by seed)")
    ax.set_title("paired differences with 95% t-intervals (red: excludes 0)", fontsize="medium")
    ax.grid(axis="x", alpha=0.3)
    return fig
