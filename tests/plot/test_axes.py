"""Every plot function draws into a caller's axes (``ax=``): panels of one figure, the data intact."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from landscape.errors import ConfigError  # noqa: E402
from landscape.hessian.results import DensityResult, EigenResult  # noqa: E402
from landscape.plot.spectrum import plot_density, plot_eigenvalues  # noqa: E402
from landscape.plot.surface import plot_surface_1d, plot_surface_2d, plot_surfaces_2d  # noqa: E402
from landscape.surface import Surface  # noqa: E402


def _surface(ndim: int, scale: float = 1.0) -> Surface:
    xs = np.linspace(-1, 1, 5)
    ys = np.linspace(-0.5, 1.0, 4) if ndim == 2 else None
    s = Surface.empty(xs, ys)
    X = np.meshgrid(xs, ys, indexing="ij") if ys is not None else [xs]
    s.loss[:] = scale * (1.0 + sum(c**2 for c in X))
    s.accuracy[:] = 0.5
    s.done[:] = True
    return s


def test_surface_panels_share_one_figure_and_draw_their_data():
    fig = Figure()
    left, right = fig.subplots(1, 2)
    s1, s2 = _surface(1), _surface(2)
    assert plot_surface_1d(s1, ax=left) is fig
    assert plot_surface_2d(s2, kind="heatmap", ax=right) is fig
    np.testing.assert_allclose(left.lines[0].get_ydata(), 1.0 + s1.xs**2)
    np.testing.assert_allclose(np.asarray(right.collections[0].get_array()).reshape(s2.shape), s2.loss)
    assert len(fig.axes) == 4  # two panels, the accuracy twin and the colour bar: no new figure


def test_surface3d_needs_3d_axes_and_draws_into_them():
    fig = Figure()
    flat = fig.add_subplot(1, 2, 1)
    with pytest.raises(ConfigError, match=r"ax is a 'rectilinear' axes.*projection='3d'"):
        plot_surface_2d(_surface(2), kind="surface3d", ax=flat)
    ax3 = fig.add_subplot(1, 2, 2, projection="3d")
    assert plot_surface_2d(_surface(2), kind="surface3d", ax=ax3) is fig
    assert len(ax3.collections) == 1
    with pytest.raises(ConfigError, match="needs 2D axes"):
        plot_surface_2d(_surface(2), kind="contour", ax=ax3)


def test_several_surfaces_into_panels_with_one_colour_scale():
    fig = Figure()
    axes = fig.subplots(1, 2)
    figs = plot_surfaces_2d([_surface(2, 1.0), _surface(2, 3.0)], kind="heatmap", axes=axes, title="t")
    assert figs == [fig, fig]
    for ax in axes:
        assert (ax.collections[0].norm.vmin, ax.collections[0].norm.vmax) == (1.0, 3.0 * (1 + 1 + 1))
        assert ax.get_title() == "t"  # every panel keeps the title, not only the first
    with pytest.raises(ConfigError, match="1 axes for 2 surfaces"):
        plot_surfaces_2d([_surface(2), _surface(2)], axes=axes[:1])


def test_spectrum_figures_draw_into_given_axes():
    fig = Figure()
    a, b = fig.subplots(1, 2)
    grid = np.linspace(-1.0, 3.0, 9)
    density = DensityResult(
        nodes=np.zeros((2, 3)),
        weights=np.full((2, 3), 1 / 3),
        grid=grid,
        density=np.exp(-(grid**2)),
        sigma=0.1,
        matvecs=6,
        num_params=3,
    )
    assert plot_density(density, ax=a) is fig
    np.testing.assert_allclose(a.lines[0].get_ydata(), np.exp(-(grid**2)))
    eig = EigenResult(
        eigenvalues=np.array([3.0, 2.0, -0.5]), residuals=np.zeros(3), converged=[True] * 3, matvecs=9
    )
    assert plot_eigenvalues(eig, ax=b) is fig
    np.testing.assert_array_equal(b.lines[0].get_xdata(), [1, 2, 3])
    np.testing.assert_array_equal(b.lines[0].get_ydata(), [3.0, 2.0, -0.5])
