"""Figures of Hessian spectra drawn from result objects (never computed here).

:func:`plot_density`: the empirical spectral density (ESD) from stochastic Lanczos quadrature on a log
density axis, with the top eigenvalues marked when given. :func:`plot_eigenvalues`: eigenvalues of
each batch (the per-batch protocol) or of one run, as points.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from landscape.errors import ConfigError
from landscape.hessian.results import DensityResult, EigenResult, PerBatchResult
from landscape.plot.axes import figure_and_axes


def plot_density(
    density: DensityResult,
    *,
    eigenvalues: EigenResult | np.ndarray | None = None,
    ax: Axes | None = None,
    floor: float = 1e-10,
    title: str | None = None,
    label: str | None = None,
    eigenvalues_label: str = "top eigenvalues",
    **line_kwargs: Any,
) -> Figure:
    """The smoothed spectral density on a log density axis.

    Args:
        density: an SLQ result.
        eigenvalues: top eigenvalues to mark with vertical dotted lines.
        ax: draw into these axes (default: a new figure).
        floor: densities below this are drawn at ``floor`` (the log axis cannot show zero).
        title: axes title (default states the runs, nodes and sigma).
        label: legend label of the curve.
        eigenvalues_label: legend label of the marked eigenvalues (say which ones they are).
        **line_kwargs: passed to ``Axes.semilogy``.

    Returns:
        The figure.
    """
    if not floor > 0:
        raise ConfigError(f"floor={floor!r} must be > 0")
    fig, ax = figure_and_axes(ax, (6.0, 4.0))
    ax.semilogy(density.grid, np.maximum(density.density, floor), label=label, **line_kwargs)
    if eigenvalues is not None:
        vals = eigenvalues.eigenvalues if isinstance(eigenvalues, EigenResult) else np.asarray(eigenvalues)
        for i, v in enumerate(vals):
            ax.axvline(float(v), color="C3", ls=":", lw=1, label=eigenvalues_label if i == 0 else None)
    ax.set_xlabel("eigenvalue")
    ax.set_ylabel("density (log scale)")
    runs, m = density.nodes.shape
    ax.set_title(
        title
        if title is not None
        else f"Hessian ESD (SLQ: {runs} runs x {m} nodes, sigma={density.sigma:.3g})"
    )
    if label is not None or eigenvalues is not None:
        ax.legend()
    return fig


def plot_eigenvalues(result: PerBatchResult | EigenResult, *, ax: Axes | None = None) -> Figure:
    """Eigenvalues as points: one column per batch for :class:`PerBatchResult`, else by index.

    Args:
        result: per-batch eigenvalues (one column of points per batch) or one run's (by index).
        ax: draw into these axes (default: a new figure).

    Returns:
        The figure.
    """
    fig, ax = figure_and_axes(ax, (6.0, 3.5))
    if isinstance(result, PerBatchResult):
        ev = np.asarray(result.eigenvalues)
        for b in range(ev.shape[0]):
            ax.plot(np.full(ev.shape[1], b), ev[b], "o", ms=3, color="C0")
        ax.set_xlabel("batch")
    else:
        ax.plot(np.arange(1, len(result.eigenvalues) + 1), result.eigenvalues, "o")
        ax.set_xlabel("index")
    ax.axhline(0.0, color="k", lw=0.5)
    ax.set_ylabel("eigenvalue")
    return fig
