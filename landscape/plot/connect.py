"""Figures of mode connectivity drawn from a :class:`~landscape.connect.ConnectResult` (nothing computed).

Loss (left) and error (right) along every path of the result against its position (``alpha`` for
linear paths, ``t`` for curves), the barrier marked on each curve and given in the legend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from landscape.connect.result import ConnectResult
from landscape.errors import check_choice

METRICS = ("loss", "error")
_LABELS = {
    "linear": "linear",
    "linear_unaligned": "linear (unaligned)",
    "bezier": "Bezier curve",
    "polychain": "polychain",
}
_STYLES = {"linear_unaligned": ":", "linear": "-", "bezier": "--", "polychain": "-."}


def _draw(result: ConnectResult, ax: Axes, metric: str) -> None:
    check_choice("metric", metric, METRICS)
    for kind, path in result.paths.items():
        values = path.loss if metric == "loss" else path.error
        b = path.barriers()
        height, at = b[f"barrier_{metric}"], b[f"barrier_{metric}_at"]
        name = _LABELS.get(kind, kind)
        if "alignment" in result.metadata and kind != "linear_unaligned":
            name += ", B aligned"
        label = f"{name} (barrier {height:.3g})"
        (line,) = ax.plot(path.positions, values, _STYLES.get(kind, "-"), marker="o", ms=3, label=label)
        if np.isfinite(height):
            i = int(np.argmin(np.abs(path.positions - at)))
            ax.plot([at], [values[i]], "^", color=line.get_color(), ms=7)
    split = result.metadata.get("split", "train")
    ax.set_xlabel("position on the path (alpha for linear, t for curves)")
    ax.set_ylabel(f"{split} {'loss' if metric == 'loss' else 'error (1 - accuracy)'}")
    ax.set_xlim(0.0, 1.0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")


def plot_connect(
    result: ConnectResult, ax: Axes | None = None, *, metric: str = "loss", title: str | None = None
) -> Figure:
    """Loss and error along the paths between two checkpoints.

    Args:
        result: a computed (or loaded) connect result.
        ax: draw only ``metric`` on this axes; ``None`` makes a new figure with loss and error side by side.
        metric: ``loss`` or ``error`` (used with ``ax``).
        title: figure title (default: ``A -> B`` and the batch-norm policy).

    Returns:
        The figure (``ax.figure`` when ``ax`` is given).
    """
    check_choice("metric", metric, METRICS)
    meta: dict[str, Any] = result.metadata
    names = [Path(str(meta[k])).name if k in meta else k.upper() for k in ("a", "b")]
    heading = title or f"{names[0]} -> {names[1]} (batch norm: {meta.get('bn', '?')})"
    if ax is not None:
        _draw(result, ax, metric)
        ax.set_title(heading, fontsize="medium")
        return ax.figure  # type: ignore[return-value]
    fig = Figure(figsize=(10, 4), layout="constrained")
    axes = fig.subplots(1, 2)
    for a, m in zip(axes, METRICS):
        _draw(result, a, m)
    fig.suptitle(heading)
    return fig
