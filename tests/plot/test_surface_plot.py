"""Figures from surface results: artists drawn, shared colour scale, bad input."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from landscape.errors import ConfigError  # noqa: E402
from landscape.plot.surface import plot_surface_1d, plot_surface_2d, plot_surfaces_2d, shared_limits  # noqa: E402
from landscape.surface import Surface  # noqa: E402


def _surface2d(scale: float = 1.0) -> Surface:
    xs, ys = np.linspace(-1, 1, 5), np.linspace(-0.5, 1.0, 4)
    s = Surface.empty(xs, ys)
    X, Y = np.meshgrid(xs, ys, indexing="ij")
    s.loss[:] = scale * (1.0 + X**2 + 2 * Y**2)
    s.accuracy[:] = 0.5
    s.done[:] = True
    s.extras.update(path_x=np.array([0.8, 0.3, 0.0]), path_y=np.array([0.6, 0.2, 0.0]))
    return s


def _surface1d(offset: float = 0.0) -> Surface:
    s = Surface.empty(np.linspace(-1, 1, 7))
    s.loss[:] = 1.0 + offset + s.xs**2
    s.accuracy[:] = 0.9 - 0.1 * s.xs**2
    s.done[:] = True
    return s


def test_1d_overlays_loss_and_accuracy_on_twin_axes():
    fig = plot_surface_1d([_surface1d(), _surface1d(0.5)], labels=["a", "b"], log=True)
    assert isinstance(fig, Figure)
    ax, ax2 = fig.axes
    assert len(ax.lines) == 2 and len(ax2.lines) == 2
    assert ax.get_yscale() == "log"
    np.testing.assert_allclose(ax.lines[1].get_ydata(), 1.5 + np.linspace(-1, 1, 7) ** 2)
    np.testing.assert_allclose(ax2.lines[0].get_ydata(), 100 * (0.9 - 0.1 * np.linspace(-1, 1, 7) ** 2))


@pytest.mark.parametrize("kind", ["contour", "filled", "heatmap", "surface3d"], ids=lambda k: k)
def test_2d_kinds_draw(kind):
    s = _surface2d()
    fig = plot_surface_2d(s, kind=kind, levels=8)
    assert isinstance(fig, Figure) and len(fig.axes) == 2  # plot and colour bar
    if kind != "surface3d":
        lines = [ln for ln in fig.axes[0].lines if ln.get_label() == "trajectory"]
        assert len(lines) == 1 and np.array_equal(lines[0].get_xdata(), [0.8, 0.3, 0.0])
    else:  # the faces carry the surface: each face's value is the mean of its four corners
        ax = fig.axes[0]
        assert ax.name == "3d" and ax.get_zlabel() == "loss"
        faces = ax.collections[0]
        L = s.loss
        corners = (L[:-1, :-1] + L[1:, :-1] + L[:-1, 1:] + L[1:, 1:]) / 4
        np.testing.assert_allclose(np.asarray(faces.get_array()), corners.ravel())
        assert (faces.norm.vmin, faces.norm.vmax) == (1.0, 4.0)  # the data's range, log scale
        assert type(faces.norm).__name__ == "LogNorm"


def test_contour_levels_are_log_spaced():
    fig = plot_surface_2d(_surface2d(), kind="contour", levels=6, log=True)
    levels = next(a for a in fig.axes[0].get_children() if hasattr(a, "levels")).levels
    np.testing.assert_allclose(levels, np.geomspace(1.0, 4.0, 6))


def test_shared_colour_scale():
    a, b = _surface2d(1.0), _surface2d(3.0)
    assert shared_limits([a, b]) == (1.0, 12.0)
    figs = plot_surfaces_2d([a, b], kind="heatmap")
    for f in figs:
        mesh = f.axes[0].collections[0]
        assert mesh.norm.vmin == 1.0 and mesh.norm.vmax == 12.0


def test_missing_points_are_blank_and_bad_input_refused():
    s = _surface2d()
    s.done[0, 0] = False
    fig = plot_surface_2d(s, kind="heatmap")
    assert np.ma.is_masked(fig.axes[0].collections[0].get_array()[0])
    with pytest.raises(ConfigError, match="kind='bars'"):
        plot_surface_2d(s, kind="bars")
    with pytest.raises(ConfigError, match="1D surfaces"):
        plot_surface_1d(s)
    with pytest.raises(ConfigError, match="2D surface"):
        plot_surface_2d(_surface1d())
