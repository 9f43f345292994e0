"""``plot_block_spectra`` draws exactly the numbers of a ``BlockSpectra`` (never computes them)."""

from __future__ import annotations

import numpy as np
import pytest

from landscape.errors import ConfigError
from landscape.hessian.blocks import BlockEntry, BlockSpectra, js_distances
from landscape.plot.spectrum import plot_block_spectra


def _result() -> BlockSpectra:
    grid = np.linspace(-1.0, 3.0, 81)
    dens = np.vstack([np.exp(-((grid - c) ** 2) / 0.1) for c in (0.0, 1.0, 2.0)])
    dens /= dens.sum(axis=1, keepdims=True) * (grid[1] - grid[0])
    entries = [
        BlockEntry(
            name=name,
            params=[f"{name}.weight"],
            num_params=4,
            eigenvalues=np.array([c + 0.5]),
            residuals=np.array([0.0]),
            converged=[True],
            nodes=np.array([[c]]),
            weights=np.array([[1.0]]),
            matvecs=5,
        )
        for name, c in (("embeddings", 0.0), ("h.0.attn", 1.0), ("h.0.mlp", 2.0))
    ]
    js = js_distances(dens)
    return BlockSpectra(
        "auto", "LA", entries, grid, dens, 0.2, js, float(js[np.triu_indices(3, 1)].mean()), 15
    )


def test_the_figure_shows_each_block_s_density_and_the_distance_matrix():
    result = _result()
    fig = plot_block_spectra(result)
    dens_ax, js_ax = fig.axes[:2]
    lines = dens_ax.get_lines()
    assert [ln.get_label() for ln in lines] == result.names
    low = 1e-6 * result.densities.max()
    for ln, d in zip(lines, result.densities):
        np.testing.assert_array_equal(ln.get_xdata(), result.grid)
        np.testing.assert_array_equal(ln.get_ydata(), np.maximum(d, low))
    assert dens_ax.get_yscale() == "log" and "eigenvalue" in dens_ax.get_xlabel()
    assert "density" in dens_ax.get_ylabel()
    np.testing.assert_array_equal(js_ax.get_images()[0].get_array(), result.js_distance)
    assert [t.get_text() for t in js_ax.get_xticklabels()] == result.names
    cells = [t.get_text() for t in js_ax.texts]
    assert len(cells) == 9 and cells[1] == f"{result.js_distance[0, 1]:.2f}"
    assert "JS distance" in fig.axes[2].get_ylabel()  # the colour bar says what the colours are
    assert f"{result.mean_js_distance:.3f}" in fig.get_suptitle()


def test_a_bad_floor_is_refused():
    with pytest.raises(ConfigError, match="floor=0 must be > 0"):
        plot_block_spectra(_result(), floor=0)
