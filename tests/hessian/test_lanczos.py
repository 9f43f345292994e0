"""Thick-restart Lanczos against dense eigendecompositions (float64)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from landscape.errors import ConfigError
from landscape.hessian import lanczos, top_eigenpairs
from landscape.hessian.testing import spectrum_matrix


def _expected(evals: np.ndarray, k: int, which: str) -> np.ndarray:
    if which == "LA":
        return np.sort(evals)[::-1][:k]
    if which == "SA":
        return np.sort(evals)[:k]
    return evals[np.argsort(-np.abs(evals))][:k]


def _indefinite(n: int = 300) -> tuple[torch.Tensor, np.ndarray]:
    g = torch.Generator().manual_seed(3)
    bulk = torch.rand(n - 10, generator=g, dtype=torch.float64) * 2 - 1  # [-1, 1]
    ends = torch.tensor([50.0, 30.0, 20.0, 12.0, 9.0, -8.0, -6.0, -60.0, -25.0, -4.0], dtype=torch.float64)
    lam = torch.cat([ends, bulk])
    return spectrum_matrix(lam, seed=4), lam.numpy()


@pytest.mark.parametrize("which", ["LA", "SA", "LM"], ids=["LA", "SA", "LM"])
@pytest.mark.parametrize("k", [1, 5], ids=["k1", "k5"])
def test_chosen_spectrum(which: str, k: int) -> None:
    A, lam = _indefinite()
    res = lanczos(A, k, which=which, tol=1e-10, seed=0)
    exp = _expected(lam, k, which)
    np.testing.assert_allclose(res.eigenvalues, exp, rtol=1e-8)
    assert res.all_converged
    assert res.vectors is not None
    Y = res.vectors
    torch.testing.assert_close(Y.T @ Y, torch.eye(k, dtype=torch.float64), atol=1e-10, rtol=0)
    true_res = torch.linalg.vector_norm(A @ Y - Y * torch.from_numpy(res.eigenvalues), dim=0).numpy()
    np.testing.assert_allclose(res.residuals, true_res, rtol=1e-3, atol=1e-12)
    assert np.all(res.residuals <= 1e-10 * np.abs(res.eigenvalues))


def test_lm_finds_negative_curvature() -> None:
    A, _ = _indefinite()
    res = lanczos(A, 2, which="LM", tol=1e-10)
    np.testing.assert_allclose(res.eigenvalues, [-60.0, 50.0], rtol=1e-8)


def test_restarts_on_clustered_spectrum() -> None:
    lam = torch.cat(
        [torch.tensor([1.0, 0.99, 0.98], dtype=torch.float64), torch.linspace(0, 0.97, 397).double()]
    )
    A = spectrum_matrix(lam, seed=1)
    res = lanczos(A, 3, tol=1e-8, ncv=10, max_matvecs=2000)
    assert res.restarts > 0 and res.all_converged
    np.testing.assert_allclose(res.eigenvalues, [1.0, 0.99, 0.98], rtol=1e-8)


def test_budget_exhausted_reports_unconverged() -> None:
    lam = torch.linspace(1, 2, 500).double()
    res = lanczos(spectrum_matrix(lam), 5, tol=1e-12, max_matvecs=12)
    assert res.matvecs == 12
    assert not res.all_converged


def test_small_operator_full_space_and_zero_eigenvalues() -> None:
    lam = torch.tensor([3.0, 0.0, 0.0, -1.0, 2.0], dtype=torch.float64)
    res = lanczos(spectrum_matrix(lam), 5, which="LA")
    np.testing.assert_allclose(res.eigenvalues, [3.0, 2.0, 0.0, 0.0, -1.0], atol=1e-12)
    assert res.all_converged


@pytest.mark.parametrize("which", ["LA", "SA", "LM"], ids=["LA", "SA", "LM"])
@pytest.mark.parametrize("problem", ["mlp_problem", "cnn_problem"], ids=["mlp", "cnn-bn"])
def test_top_eigenpairs_of_network_hessian(problem: str, which: str, request: pytest.FixtureRequest) -> None:
    obj, H = request.getfixturevalue(problem)
    k = 5 if which == "LA" else 3
    res = top_eigenpairs(obj, k, which=which, tol=1e-10)
    evals = torch.linalg.eigvalsh(H).numpy()
    np.testing.assert_allclose(res.eigenvalues, _expected(evals, k, which), rtol=1e-8)
    if which == "SA":
        assert res.eigenvalues[0] < 0  # the random-init Hessian is indefinite
    assert len(res.eigenvectors) == k
    for vec, lam in zip(res.eigenvectors, res.eigenvalues):
        assert [t.shape for t in vec] == [p.shape for p in obj.params]
        flat = torch.cat([t.reshape(-1) for t in vec])
        torch.testing.assert_close(H @ flat, lam * flat, atol=1e-7 * abs(lam), rtol=0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"which": "BE"}, "which='BE'"),
        ({"k": 0}, "k=0"),
        ({"tol": 0.0}, "tol=0.0"),
        ({"max_matvecs": 1, "k": 2}, "max_matvecs"),
    ],
    ids=["which", "k", "tol", "budget"],
)
def test_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        lanczos(torch.eye(4, dtype=torch.float64), **kwargs)


def test_result_roundtrip(tmp_path) -> None:
    A, _ = _indefinite(60)
    res = lanczos(A, 3, tol=1e-8)
    path = res.save(tmp_path / "eig.json")
    back = type(res).load(path)
    np.testing.assert_array_equal(back.eigenvalues, res.eigenvalues)
    np.testing.assert_array_equal(back.residuals, res.residuals)
    assert back.converged == res.converged and back.matvecs == res.matvecs
    torch.testing.assert_close(back.vectors, res.vectors)
