"""Figures of Hessian spectra drawn from result objects (never computed here).

:func:`plot_density`: the empirical spectral density (ESD) from stochastic Lanczos quadrature on a log
density axis, with the top eigenvalues marked when given. :func:`plot_eigenvalues`: eigenvalues of
each batch (the per-batch protocol) or of one run, as points. :func:`plot_block_spectra`: the
densities of the Hessian's blocks on shared axes beside their Jensen-Shannon distance matrix (the
block-heterogeneity picture of Zhang et al. 2024).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from landscape.errors import ConfigError
from landscape.hessian.blocks import BlockSpectra
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


def plot_block_spectra(result: BlockSpectra, *, floor: float = 1e-6, title: str | None = None) -> Figure:
    """Each block's spectral density on shared axes (left) and the blocks' Jensen-Shannon distances
    (right), from a :class:`~landscape.hessian.blocks.BlockSpectra`.

    Args:
        result: the per-block spectra.
        floor: densities below ``floor`` times the highest are drawn there (the log axis cannot show 0).
        title: figure title (default: the mean distance and the number of blocks).

    Returns:
        The figure.
    """
    if not floor > 0:
        raise ConfigError(f"floor={floor!r} must be > 0")
    names = result.names
    fig = Figure(figsize=(12.0, 4.6), layout="constrained")
    dens_ax, js_ax = fig.subplots(1, 2, width_ratios=(1.25, 1.0))
    low = floor * float(np.max(result.densities))
    for i, (name, d) in enumerate(zip(names, result.densities)):
        dens_ax.semilogy(result.grid, np.maximum(d, low), color=f"C{i % 10}", lw=1.3, label=name)
    dens_ax.set_xlabel("eigenvalue of the block's Hessian")
    dens_ax.set_ylabel("spectral density (per unit eigenvalue, log scale)")
    dens_ax.set_title(f"per-block densities (SLQ, shared sigma={result.sigma:.3g})")
    dens_ax.set_ylim(bottom=low)
    dens_ax.legend(
        title="block",
        fontsize="small",
        ncol=1 if len(names) <= 8 else 2,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        borderaxespad=0.0,
    )
    image = js_ax.imshow(result.js_distance, cmap="viridis", vmin=0.0, vmax=float(np.sqrt(np.log(2.0))))
    ticks = np.arange(len(names))
    js_ax.set_xticks(ticks, names, rotation=45, ha="right", fontsize="small")
    js_ax.set_yticks(ticks, names, fontsize="small")
    if len(names) <= 12:  # the values themselves, while they still fit in the cells
        for i in ticks:
            for j in ticks:
                v = float(result.js_distance[i, j])
                js_ax.text(
                    j,
                    i,
                    f"{v:.2f}",
                    ha="center",
                    va="center",
                    fontsize="x-small",
                    color="black" if v > 0.5 else "white",
                )
    js_ax.set_title("Jensen-Shannon distance between blocks")
    fig.colorbar(image, ax=js_ax, label="JS distance (nats$^{1/2}$; at most $\\sqrt{\\ln 2}$ = 0.833)")
    mean = result.mean_js_distance
    fig.suptitle(
        title
        if title is not None
        else f"Hessian block heterogeneity: mean JS distance {mean:.3f} over {len(names)} blocks"
    )
    return fig
