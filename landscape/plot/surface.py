"""Figures of loss surfaces drawn from :class:`~landscape.surface.Surface` results (never computed here).

1D: loss (left axis) and accuracy (right, twin axis), several surfaces overlaid, optional log scale.
2D: contour lines with log-spaced levels, filled contour, heatmap or 3D surface, with the projected
trajectory (``extras['path_x'/'path_y']``) and marked points (``extras['points_x'/'points_y']``)
overlaid. A shared colour scale (``vmin``/``vmax``, see :func:`shared_limits`) lets two surfaces be
compared side by side. Points whose loss is NaN or infinite are left out (lines break, contours
are drawn over the finite part); the surface file keeps them and :attr:`Surface.num_nonfinite`
counts them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colors, ticker
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from landscape.errors import ConfigError, check_choice
from landscape.plot.axes import figure_and_axes
from landscape.surface.store import Surface

KINDS_2D = ("contour", "filled", "heatmap", "surface3d")
QUANTITIES = ("loss", "accuracy")


def _values(surface: Surface, quantity: str) -> np.ndarray:
    check_choice("quantity", quantity, QUANTITIES)
    v = np.array(surface.loss if quantity == "loss" else surface.accuracy, dtype=np.float64)
    v[~surface.finite] = np.nan  # not computed yet, or a NaN/inf loss (its accuracy is no prediction)
    v[~np.isfinite(v)] = np.nan
    return v


def shared_limits(surfaces: Sequence[Surface], quantity: str = "loss") -> tuple[float, float]:
    """Smallest and largest computed value over several surfaces (one colour scale for all)."""
    vals = [(_values(s, quantity)) for s in surfaces]
    finite = np.concatenate([v[np.isfinite(v)] for v in vals]) if vals else np.array([])
    if finite.size == 0:
        raise ConfigError("the surfaces have no computed points to take a colour scale from")
    return float(finite.min()), float(finite.max())


NORM_WORDS = {"filter": "filter-normalized", "layer": "layer-normalized", "model": "model-normalized"}


def default_title(surface: Surface) -> str:
    """``"run (file): what the directions are"``, e.g. ``"sgd (final.pt): random directions,
    filter-normalized"`` (the file's stem instead of ``run (file)`` outside a run folder)."""
    meta = surface.metadata
    ckpt = meta.get("checkpoint")
    run = meta.get("run")
    if ckpt:
        who = f"{run} ({Path(ckpt).name})" if run else Path(ckpt).stem
    else:
        who = str(meta.get("label") or "surface")
    direction = meta.get("direction") or {}
    kind = direction.get("kind")
    plural = "s" if surface.ndim == 2 else ""
    if kind == "random":
        norm = direction.get("norm", "filter")
        what = f"random direction{plural}, {NORM_WORDS.get(norm, 'not normalized')}"
    elif kind == "interpolation":
        what = f"interpolation to {Path(str(direction.get('to', ''))).name}"
    elif kind == "plane":
        what = "plane through three checkpoints"
    elif kind == "pca":
        what = "PCA directions of the trajectory"
    elif kind == "eigen":
        what = f"top Hessian eigenvector{plural}"
    else:
        return who
    return f"{who}: {what}"


def _label(surface: Surface, default: str) -> str:
    return str(surface.metadata.get("label") or default)


def reduced_precision(surface: Surface) -> str | None:
    """The autocast precision a surface was computed in (``bfloat16``/``float16``), else ``None``."""
    precision = surface.metadata.get("precision", "float32")
    return None if precision == "float32" else str(precision)


def _title_with_precision(title: str | None, surfaces: Sequence[Surface]) -> str | None:
    """``title`` plus a line naming the reduced precisions, so a figure never passes for float32."""
    reduced = sorted({p for p in map(reduced_precision, surfaces) if p is not None})
    if not reduced:
        return title
    note = f"loss from a {'/'.join(reduced)} forward (autocast)"
    return f"{title}\n{note}" if title else note


def plot_surface_1d(
    surfaces: Surface | Sequence[Surface],
    *,
    labels: Sequence[str] | None = None,
    log: bool = False,
    accuracy: bool = True,
    title: str | None = None,
    xlabel: str | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Loss and accuracy along one direction; several surfaces are overlaid with one colour each.

    Args:
        surfaces: one or more 1D surfaces.
        labels: legend entries (default: each surface's ``metadata['label']`` or its index).
        log: logarithmic loss axis.
        accuracy: draw accuracy (dashed) on a twin right axis.
        title: figure title (a second line names a reduced precision the surface was computed in).
        xlabel: label of the horizontal axis (default from the direction kind).
        ax: draw into these axes (the accuracy goes on a twin of them); default: a new figure.

    Returns:
        The figure.
    """
    group = [surfaces] if isinstance(surfaces, Surface) else list(surfaces)
    if not group:
        raise ConfigError("plot_surface_1d needs at least one surface")
    for s in group:
        if s.ndim != 1:
            raise ConfigError(f"plot_surface_1d needs 1D surfaces, got a {s.ndim}D one; use plot_surface_2d")
    if labels is not None and len(labels) != len(group):
        raise ConfigError(f"{len(labels)} labels for {len(group)} surfaces")
    fig, ax = figure_and_axes(ax, (6.0, 4.2))
    ax2 = ax.twinx() if accuracy else None
    for i, s in enumerate(group):
        color = f"C{i % 10}"
        name = labels[i] if labels is not None else _label(s, f"surface {i}" if len(group) > 1 else "")
        if len(group) > 1 and reduced_precision(s):
            name = f"{name} [{reduced_precision(s)}]"
        loss = _values(s, "loss")
        ax.plot(s.xs, loss, "-", color=color, lw=1.8, label=f"{name} loss".strip())
        if ax2 is not None:
            acc = _values(s, "accuracy")
            if np.isfinite(acc).any():
                ax2.plot(s.xs, 100 * acc, "--", color=color, lw=1.4, label=f"{name} accuracy".strip())
    if log:
        ax.set_yscale("log")
        _plain_ticks(ax.yaxis)
    kind = group[0].metadata.get("direction", {}).get("kind", "")
    ax.set_xlabel(xlabel or ("alpha (interpolation)" if kind == "interpolation" else "alpha"))
    ax.set_ylabel("loss")
    handles, names = ax.get_legend_handles_labels()
    if ax2 is not None:
        ax2.set_ylabel("accuracy (%)")
        h2, n2 = ax2.get_legend_handles_labels()
        handles, names = handles + h2, names + n2
    if handles:
        ax.legend(handles, names, loc="best", fontsize="small")
    title = _title_with_precision(title, group)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    return fig


def _levels(vmin: float, vmax: float, n: int, log: bool) -> np.ndarray:
    if vmax <= vmin:
        vmax = vmin + max(abs(vmin), 1.0) * 1e-6
    if log and vmin > 0:
        return np.geomspace(vmin, vmax, n)
    return np.linspace(vmin, vmax, n)


def plot_surface_2d(
    surface: Surface,
    *,
    kind: str = "contour",
    quantity: str = "loss",
    levels: int = 30,
    log: bool = True,
    vmin: float | None = None,
    vmax: float | None = None,
    trajectory: bool = True,
    title: str | None = None,
    cmap: str = "viridis",
    ax: Axes | None = None,
) -> Figure:
    """A 2D surface as contour lines, filled contours, a heatmap or a 3D surface.

    Args:
        surface: a 2D surface (missing points are left blank).
        kind: ``contour``, ``filled``, ``heatmap`` or ``surface3d``.
        quantity: ``loss`` or ``accuracy``.
        levels: number of contour levels.
        log: log-spaced levels and a logarithmic colour scale (when all values are positive).
        vmin: lower end of the colour scale (default: the surface's minimum); give the same
            ``vmin``/``vmax`` to several figures to compare them.
        vmax: upper end of the colour scale (default: the surface's maximum).
        trajectory: overlay ``extras['path_x'/'path_y']`` and ``extras['points_x'/'points_y']``.
        title: figure title (a second line names a reduced precision the surface was computed in).
        cmap: matplotlib colour map.
        ax: draw into these axes (3D axes for ``surface3d``: ``fig.add_subplot(projection="3d")``);
            the colour bar takes room from them. Default: a new figure.

    Returns:
        The figure.
    """
    check_choice("kind", kind, KINDS_2D)
    if surface.ndim != 2:
        raise ConfigError(
            f"plot_surface_2d needs a 2D surface, got a {surface.ndim}D one; use plot_surface_1d"
        )
    if levels < 2:
        raise ConfigError(f"levels={levels} must be >= 2")
    z = _values(surface, quantity)
    if not np.isfinite(z).any():
        if surface.num_done:
            raise ConfigError(
                f"none of the {surface.num_done} computed points has a finite {quantity}; nothing to draw"
            )
        raise ConfigError("the surface has no computed points yet")
    lo = float(np.nanmin(z)) if vmin is None else float(vmin)
    hi = float(np.nanmax(z)) if vmax is None else float(vmax)
    if hi < lo:
        raise ConfigError(f"vmin={lo} is larger than vmax={hi}")
    use_log = log and lo > 0 and quantity == "loss"
    norm: Any = (
        colors.LogNorm(vmin=lo, vmax=hi) if use_log and hi > lo else colors.Normalize(vmin=lo, vmax=hi)
    )
    X, Y = np.meshgrid(surface.xs, surface.ys, indexing="ij")
    zc = np.clip(z, lo, hi) if kind in ("filled", "surface3d") else z
    projection = "3d" if kind == "surface3d" else None
    fig, ax = figure_and_axes(ax, (6.0, 5.0), projection)
    if kind == "surface3d":
        art = ax.plot_surface(
            X, Y, np.ma.masked_invalid(zc), cmap=cmap, norm=norm, linewidth=0, antialiased=True
        )
        ax.set_zlabel(quantity)
        _plain_ticks(fig.colorbar(art, ax=ax, shrink=0.7, label=quantity).ax.yaxis)
    else:
        lv = _levels(lo, hi, levels, use_log)
        if kind == "contour":
            art = ax.contour(X, Y, np.ma.masked_invalid(z), levels=lv, cmap=cmap, norm=norm, linewidths=1.0)
            ax.clabel(art, art.levels[:: max(1, len(lv) // 6)], fontsize=7, fmt="%.3g")
        elif kind == "filled":
            art = ax.contourf(
                X, Y, np.ma.masked_invalid(zc), levels=lv, cmap=cmap, norm=norm, extend="neither"
            )
        else:
            art = ax.pcolormesh(X, Y, np.ma.masked_invalid(z), cmap=cmap, norm=norm, shading="nearest")
        _plain_ticks(fig.colorbar(art, ax=ax, label=quantity).ax.yaxis)
        if trajectory:
            _overlay(ax, surface)
        ax.set_aspect("auto")
    xl, yl = surface.metadata.get("axis_labels", ["alpha", "beta"])
    ax.set_xlabel(xl)
    ax.set_ylabel(yl)
    title = _title_with_precision(title, [surface])
    if title:
        ax.set_title(title)
    return fig


def _plain_ticks(axis: Any) -> None:
    """Plain numbers (``2.34``) instead of ``2.34 x 10^0`` on log-scaled axes."""
    axis.set_major_formatter(ticker.FormatStrFormatter("%.5g"))
    axis.set_minor_formatter(ticker.NullFormatter())


def _overlay(ax: Any, surface: Surface) -> None:
    ex = surface.extras
    if "path_x" in ex and "path_y" in ex:
        ax.plot(ex["path_x"], ex["path_y"], "o-", color="red", ms=3, lw=1.2, label="trajectory")
        ax.plot(ex["path_x"][-1:], ex["path_y"][-1:], "*", color="red", ms=10)
    if "points_x" in ex and "points_y" in ex:
        names = surface.metadata.get("point_labels") or [""] * len(ex["points_x"])
        ax.plot(ex["points_x"], ex["points_y"], "s", color="black", ms=6)
        for px, py, name in zip(ex["points_x"], ex["points_y"], names):
            ax.annotate(str(name), (px, py), textcoords="offset points", xytext=(4, 4), fontsize=8)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize="small")


def plot_surfaces_2d(
    surfaces: Sequence[Surface],
    *,
    labels: Sequence[str] | None = None,
    shared_scale: bool = True,
    axes: Sequence[Axes] | None = None,
    **kwargs: Any,
) -> list[Figure]:
    """One figure per surface with a shared colour scale (unless given or ``shared_scale=False``).

    Args:
        surfaces: 2D surfaces.
        labels: titles, one per surface (default: ``kwargs['title']`` for every one).
        shared_scale: one colour scale over all surfaces (:func:`shared_limits`).
        axes: draw surface ``i`` into ``axes[i]`` (e.g. the panels of one figure); default: a new
            figure each.
        **kwargs: passed to :func:`plot_surface_2d`.

    Returns:
        The figure of each surface (the same figure repeated when ``axes`` share one).
    """
    if axes is not None and len(axes) != len(surfaces):
        raise ConfigError(f"{len(axes)} axes for {len(surfaces)} surfaces; give one axes per surface")
    quantity = kwargs.get("quantity", "loss")
    if shared_scale and kwargs.get("vmin") is None and kwargs.get("vmax") is None:
        kwargs["vmin"], kwargs["vmax"] = shared_limits(surfaces, quantity)
    title = kwargs.pop("title", None)
    figs = []
    for i, s in enumerate(surfaces):
        ax = axes[i] if axes is not None else None
        figs.append(plot_surface_2d(s, title=labels[i] if labels is not None else title, ax=ax, **kwargs))
    return figs
