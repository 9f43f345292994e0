"""Figures of a run comparison (direction vs magnitude), drawn from a :class:`Comparison`.

Six panels: per epoch, the mean of each SAM-vs-SGD statistic of each run (``frac_larger``,
``grad_norm_ratio``, ``cosine``; Luong 2024's magnitude study), then per run the final test accuracy,
train loss and ``lambda_max``. Each panel has its own function taking an optional ``ax``.
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from landscape.errors import check_choice
from landscape.optim.decompose import STAT_KEYS
from landscape.plot.axes import figure_and_axes
from landscape.runs.compare import Comparison

_TITLES = {
    "frac_larger": "fraction of |g_SAM,i| > |g_SGD,i|",
    "grad_norm_ratio": "||g_SAM|| / ||g_SGD||",
    "cosine": "cos(g_SAM, g_SGD)",
    "test_accuracy": "test accuracy",
    "train_loss": "train loss",
    "lambda_max": "lambda_max (Hessian)",
}
#: Per-run values drawn as bars.
FINAL_VALUES = ("test_accuracy", "train_loss", "lambda_max")
#: The panels of :func:`plot_comparison`, in order (first row, then second row).
PANELS = ("frac_larger", "grad_norm_ratio", "cosine", *FINAL_VALUES)
# Where the statistic of two equal gradients lies: fraction 1/2 (ties aside), ratio 1.
_REFERENCE_LINES = {"frac_larger": 0.5, "grad_norm_ratio": 1.0}


def plot_statistic_by_epoch(
    comparison: Comparison, key: str = "frac_larger", *, ax: Axes | None = None
) -> Figure:
    """The per-epoch mean of the statistic ``key`` (one of ``STAT_KEYS``), one line per SAM-family run.

    Args:
        comparison: the runs.
        key: ``frac_larger``, ``grad_norm_ratio`` or ``cosine``.
        ax: draw into these axes (default: a new figure).

    Returns:
        The figure of ``ax``.
    """
    check_choice("key", key, STAT_KEYS)
    fig, ax = figure_and_axes(ax, (4.5, 3.2))
    drawn = False
    for run in comparison.runs:
        es = run.epoch_stats
        if es and key in es and any(math.isfinite(v) for v in es[key]):
            ax.plot(es["epoch"], es[key], marker="o", ms=3, label=run.name)
            drawn = True
    if key in _REFERENCE_LINES:
        ax.axhline(_REFERENCE_LINES[key], color="k", lw=0.5, ls=":")
    ax.set_title(_TITLES[key])
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if drawn:
        ax.legend(fontsize="small")
    else:
        ax.text(0.5, 0.5, "no SAM-family runs", ha="center", va="center", transform=ax.transAxes)
    return fig


def plot_final_values(
    comparison: Comparison, metric: str = "test_accuracy", *, ax: Axes | None = None
) -> Figure:
    """One bar per run of ``metric`` (one of ``FINAL_VALUES``), labelled with its value ("n/a" if missing).

    Args:
        comparison: the runs.
        metric: ``test_accuracy``, ``train_loss`` or ``lambda_max``.
        ax: draw into these axes (default: a new figure).

    Returns:
        The figure of ``ax``.
    """
    check_choice("metric", metric, FINAL_VALUES)
    fig, ax = figure_and_axes(ax, (4.5, 3.2))
    names = [r.name for r in comparison.runs]
    values = [getattr(r, metric) for r in comparison.runs]
    values = [float("nan") if v is None else float(v) for v in values]
    x = np.arange(len(names))
    ax.bar(x, [v if math.isfinite(v) else 0.0 for v in values], color=[f"C{i % 10}" for i in range(len(x))])
    for xi, v in zip(x, values):
        finite = math.isfinite(v)
        ax.text(
            xi,
            v if finite else 0.0,
            f"{v:.4g}" if finite else "n/a",
            ha="center",
            va="bottom",
            fontsize="small",
        )
    ax.set_xticks(x, names, rotation=20, ha="right")
    ax.set_title(_TITLES[metric])
    return fig


def plot_comparison(comparison: Comparison, *, ax: Axes | None = None, panel: str = "frac_larger") -> Figure:
    """All six panels (``PANELS``) in a 2 x 3 figure; with ``ax``, only ``panel`` drawn into ``ax``.

    Args:
        comparison: the runs.
        ax: draw the one panel ``panel`` into these axes (default: a new six-panel figure).
        panel: which panel goes into ``ax`` (ignored without ``ax``).

    Returns:
        The figure.
    """
    check_choice("panel", panel, PANELS)
    if ax is not None:
        return _draw_panel(comparison, panel, ax)
    fig = Figure(figsize=(13.0, 6.5), layout="constrained")
    for name, axes in zip(PANELS, fig.subplots(2, 3).flat):
        _draw_panel(comparison, name, axes)
    return fig


def _draw_panel(comparison: Comparison, panel: str, ax: Axes) -> Figure:
    if panel in STAT_KEYS:
        return plot_statistic_by_epoch(comparison, panel, ax=ax)
    return plot_final_values(comparison, panel, ax=ax)
