"""Where a plot function draws: the caller's axes (``ax=``) or a new figure of its own."""

from __future__ import annotations

from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from landscape.errors import ConfigError


def figure_and_axes(
    ax: Axes | None, figsize: tuple[float, float], projection: str | None = None
) -> tuple[Figure, Any]:
    """The figure that owns ``ax`` (the top figure for an axes in a sub-figure), or a new figure of
    ``figsize`` with one axes of ``projection``.

    Raises:
        ConfigError: ``ax`` is a 2D axes where 3D is needed, or the other way round.
    """
    if ax is None:
        fig = Figure(figsize=figsize, layout="constrained")
        return fig, fig.add_subplot(projection=projection)
    if (projection == "3d") != (ax.name == "3d"):
        need = "3D axes, fig.add_subplot(projection='3d')" if projection == "3d" else "2D axes"
        raise ConfigError(f"ax is a {ax.name!r} axes; this figure needs {need}")
    owner = ax.get_figure()
    root = getattr(owner, "figure", owner)  # a sub-figure's .figure is the top figure
    if not isinstance(root, Figure):
        raise ConfigError("ax belongs to no figure; create it with fig.add_subplot()")
    return root, ax
