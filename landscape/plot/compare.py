"""Figures of a run comparison (direction vs magnitude), drawn from a :class:`Comparison`."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from landscape.runs.compare import Comparison

_TITLES = {
    "frac_larger": "fraction of |g_SAM,i| > |g_SGD,i|",
    "grad_norm_ratio": "||g_SAM|| / ||g_SGD||",
    "cosine": "cos(g_SAM, g_SGD)",
}


def plot_comparison(comparison: Comparison) -> Figure:
    """Per-epoch magnitude statistics of each run, then test accuracy and ``lambda_max`` per run."""
    fig = Figure(figsize=(13.0, 6.5), layout="constrained")
    axes = fig.subplots(2, 3)
    for ax, key in zip(axes[0], ("frac_larger", "grad_norm_ratio", "cosine")):
        drawn = False
        for run in comparison.runs:
            es = run.epoch_stats
            if es and key in es and any(math.isfinite(v) for v in es[key]):
                ax.plot(es["epoch"], es[key], marker="o", ms=3, label=run.name)
                drawn = True
        if key == "frac_larger":
            ax.axhline(0.5, color="k", lw=0.5, ls=":")
        if key == "grad_norm_ratio":
            ax.axhline(1.0, color="k", lw=0.5, ls=":")
        ax.set_title(_TITLES[key])
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if drawn:
            ax.legend(fontsize="small")
        else:
            ax.text(0.5, 0.5, "no SAM-family runs", ha="center", va="center", transform=ax.transAxes)
    names = [r.name for r in comparison.runs]
    x = np.arange(len(names))
    bars = [
        ("test accuracy", [r.test_accuracy for r in comparison.runs]),
        ("train loss", [r.train_loss for r in comparison.runs]),
        (
            "lambda_max (Hessian)",
            [r.lambda_max if r.lambda_max is not None else float("nan") for r in comparison.runs],
        ),
    ]
    for ax, (title, vals) in zip(axes[1], bars):
        ax.bar(x, [v if math.isfinite(v) else 0.0 for v in vals], color=[f"C{i % 10}" for i in range(len(x))])
        for xi, v in zip(x, vals):
            ax.text(
                xi,
                v if math.isfinite(v) else 0.0,
                f"{v:.4g}" if math.isfinite(v) else "n/a",
                ha="center",
                va="bottom",
                fontsize="small",
            )
        ax.set_xticks(x, names, rotation=20, ha="right")
        ax.set_title(title)
    return fig
