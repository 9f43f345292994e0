"""Stochastic Lanczos quadrature against closed forms (Gauss quadrature exactness, moments)."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
import torch

from landscape.errors import ConfigError
from landscape.hessian.results import DensityResult
from landscape.hessian.spectral_density import lanczos_quadrature, slq
from landscape.hessian.testing import spectrum_matrix
from landscape.plot.spectrum import plot_density, plot_eigenvalues

matplotlib.use("Agg")


def _matrix(n: int = 150) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    lam = torch.cat(
        [torch.randn(n - 5, generator=g, dtype=torch.float64) * 0.3, torch.tensor([8.0, 5, 3, -2, 4])]
    )
    return spectrum_matrix(lam, seed=1), lam


@pytest.mark.parametrize("p", [0, 1, 2, 3, 7, 19], ids=lambda p: f"p{p}")
def test_gauss_quadrature_exact_for_low_degree(p: int) -> None:
    A, _ = _matrix()
    v = torch.randn(A.shape[0], generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    v = v / v.norm()
    theta, w, m = lanczos_quadrature(A, v, 10)  # exact up to degree 19
    assert m == 10
    exact = float(v @ torch.linalg.matrix_power(A, p) @ v)
    assert float(np.sum(w * theta**p)) == pytest.approx(exact, rel=1e-9, abs=1e-12)


def test_quadrature_exact_at_invariant_subspace() -> None:
    lam = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    A = spectrum_matrix(lam)
    theta, w, m = lanczos_quadrature(A, torch.ones(4, dtype=torch.float64), 10)
    assert m == 4
    np.testing.assert_allclose(np.sort(theta), [1, 2, 3, 4], atol=1e-12)
    assert w.sum() == pytest.approx(1.0)


def test_density_integrates_to_one_and_moments_match_dense() -> None:
    A, lam = _matrix()
    res = slq(A, runs=30, steps=25, seed=0)
    assert np.trapezoid(res.density, res.grid) == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(res.weights.sum(axis=1), 1.0, atol=1e-12)
    for p in (1, 2, 3):
        per_run = np.sum(res.weights * res.nodes**p, axis=1)
        exact = float((lam**p).mean())
        sem = per_run.std(ddof=1) / np.sqrt(len(per_run))
        assert abs(per_run.mean() - exact) < 4 * sem + 1e-12
        assert res.moment(p) == pytest.approx(per_run.mean())
    assert res.nodes.max() == pytest.approx(8.0, rel=1e-8)  # extreme eigenvalues converge first
    assert res.nodes.min() == pytest.approx(-2.0, rel=1e-6)
    assert res.matvecs == 30 * 25


def test_start_vectors_give_exact_per_run_moments() -> None:
    A, _ = _matrix(60)
    Z = torch.randn(60, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    res = slq(A, steps=8, start_vectors=Z, sigma=0.1)
    for r in range(3):
        z = Z[:, r] / Z[:, r].norm()
        exact = float(z @ A @ A @ A @ z)
        assert float(np.sum(res.weights[r] * res.nodes[r] ** 3)) == pytest.approx(exact, rel=1e-9)


def test_density_roundtrip_and_figure(tmp_path) -> None:
    A, _ = _matrix(60)
    res = slq(A, runs=2, steps=10, seed=1)
    path = res.save(tmp_path / "density.json")
    assert (tmp_path / "density.npz").exists()
    back = DensityResult.load(path)
    np.testing.assert_array_equal(back.density, res.density)
    np.testing.assert_array_equal(back.nodes, res.nodes)
    assert back.sigma == res.sigma
    fig = plot_density(back, eigenvalues=np.array([8.0, 5.0]))
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    assert len(ax.lines) == 3
    fig.savefig(tmp_path / "density.png")


def test_plot_eigenvalues_by_index() -> None:
    from landscape.hessian import lanczos

    A, lam = _matrix(60)
    fig = plot_eigenvalues(lanczos(A, 3))
    assert len(fig.axes[0].lines) == 2  # points + the zero line
    points, zero = fig.axes[0].lines
    np.testing.assert_array_equal(points.get_xdata(), [1, 2, 3])  # by index, from 1
    # the plotted values are the three largest eigenvalues of the matrix, most wanted first
    np.testing.assert_allclose(points.get_ydata(), [8.0, 5.0, 4.0], rtol=1e-8)
    np.testing.assert_array_equal(zero.get_ydata(), [0.0, 0.0])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"runs": 0}, "runs=0"),
        ({"sigma": 0.0}, "sigma=0.0"),
        ({"start_vectors": torch.zeros(3, 2)}, "start_vectors"),
    ],
    ids=["runs", "sigma", "start"],
)
def test_slq_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        slq(torch.eye(5, dtype=torch.float64), **kwargs)
