"""Block Lanczos against dense eigendecompositions (float64)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from landscape.analysis import SharpnessOptions, sharpness
from landscape.errors import ConfigError
from landscape.hessian import EigenResult, HessianOperator, block_lanczos
from landscape.hessian.testing import spectrum_matrix


def _expected(evals: np.ndarray, k: int, which: str) -> np.ndarray:
    if which == "LA":
        return np.sort(evals)[::-1][:k]
    if which == "SA":
        return np.sort(evals)[:k]
    return evals[np.argsort(-np.abs(evals))][:k]


def _indefinite(n: int = 300) -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    bulk = torch.rand(n - 10, generator=g, dtype=torch.float64) * 2 - 1  # [-1, 1]
    ends = torch.tensor([50.0, 30.0, 20.0, 12.0, 9.0, -8.0, -6.0, -60.0, -25.0, -4.0], dtype=torch.float64)
    return spectrum_matrix(torch.cat([ends, bulk]), seed=4)


class CountingOperator:
    """A dense matrix that counts its ``@`` calls and the columns pushed through them."""

    def __init__(self, A: torch.Tensor) -> None:
        self.A, self.shape, self.dtype = A, A.shape, A.dtype
        self.calls, self.columns = 0, 0

    def __matmul__(self, V: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.columns += 1 if V.dim() == 1 else V.shape[1]
        return self.A @ V


def _check_pairs(A: torch.Tensor, res: EigenResult, k: int, which: str, rtol: float) -> None:
    evals = torch.linalg.eigvalsh(A).numpy()
    np.testing.assert_allclose(res.eigenvalues, _expected(evals, k, which), rtol=rtol, atol=1e-12)
    assert res.vectors is not None and res.vectors.shape == (A.shape[0], k)
    Y = res.vectors
    torch.testing.assert_close(Y.T @ Y, torch.eye(k, dtype=torch.float64), atol=1e-10, rtol=0)
    true_res = torch.linalg.vector_norm(A @ Y - Y * torch.from_numpy(res.eigenvalues), dim=0).numpy()
    np.testing.assert_allclose(res.residuals, true_res, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("which", ["LA", "SA", "LM"], ids=["LA", "SA", "LM"])
@pytest.mark.parametrize(
    ("k", "block"), [(1, None), (5, None), (5, 2), (3, 6)], ids=["k1", "k5", "k5b2", "k3b6"]
)
def test_chosen_spectrum(which: str, k: int, block: int | None) -> None:
    A = _indefinite()
    res = block_lanczos(A, k, block_size=block, which=which, tol=1e-10)
    _check_pairs(A, res, k, which, rtol=1e-9)
    assert res.all_converged and res.method == "block-lanczos"
    assert np.all(res.residuals <= 1e-10 * np.abs(res.eigenvalues))


def test_clustered_and_repeated_eigenvalues() -> None:
    """A triple eigenvalue and a tight cluster: a block of 4 resolves the multiplicity."""
    top = torch.tensor([5.0, 5.0, 5.0, 4.999, 4.998], dtype=torch.float64)
    A = spectrum_matrix(torch.cat([top, torch.linspace(-1, 4.0, 195).double()]), seed=2)
    res = block_lanczos(A, 5, block_size=4, tol=1e-10, max_matvecs=3000)
    assert res.all_converged
    _check_pairs(A, res, 5, "LA", rtol=1e-10)


def test_passes_count_op_calls_and_matvecs_count_columns() -> None:
    op = CountingOperator(_indefinite(120))
    res = block_lanczos(op, 4, block_size=3, tol=1e-8)
    assert res.passes == op.calls and res.matvecs == op.columns
    assert res.passes < res.matvecs


@pytest.mark.parametrize(("n", "k", "block"), [(5, 5, 2), (7, 2, 4), (9, 3, 3)], ids=["n5", "n7", "n9"])
def test_small_operator_spans_the_space(n: int, k: int, block: int) -> None:
    """``n`` below ``block * steps``: the basis fills the space and the pairs are exact."""
    lam = torch.linspace(-2, 3, n, dtype=torch.float64)
    lam[1] = 0.0  # a zero eigenvalue still converges (the floor)
    A = spectrum_matrix(lam, seed=n)
    res = block_lanczos(A, k, block_size=block, which="LA", tol=1e-12)
    assert res.all_converged and res.matvecs <= n
    _check_pairs(A, res, k, "LA", rtol=1e-10)


def test_budget_exhausted_reports_unconverged() -> None:
    A = spectrum_matrix(torch.linspace(1, 2, 500).double())
    res = block_lanczos(A, 5, block_size=4, tol=1e-12, max_matvecs=14)
    assert res.matvecs == 14 and res.passes == 4  # the last block is narrowed to fit the budget
    assert not res.all_converged and len(res.converged) == 5


def test_restarts_keep_converging() -> None:
    lam = torch.cat(
        [torch.tensor([1.0, 0.99, 0.98], dtype=torch.float64), torch.linspace(0, 0.97, 397).double()]
    )
    A = spectrum_matrix(lam, seed=1)
    res = block_lanczos(A, 3, block_size=3, tol=1e-8, ncv=15, max_matvecs=4000)
    assert res.restarts > 0 and res.all_converged
    np.testing.assert_allclose(res.eigenvalues, [1.0, 0.99, 0.98], rtol=1e-10)


@pytest.mark.parametrize("columns", [1, 3, 7], ids=["fewer", "equal", "more"])
def test_start_block(columns: int) -> None:
    """A start block near the wanted eigenvectors saves products; wider or narrower than the block."""
    A = _indefinite()
    exact = torch.linalg.eigh(A).eigenvectors[:, -columns:]
    g = torch.Generator().manual_seed(5)
    V0 = exact + 1e-3 * torch.randn(exact.shape, generator=g, dtype=torch.float64)
    op = CountingOperator(A)
    warm = block_lanczos(op, 3, block_size=3, tol=1e-10, V0=V0)
    cold = block_lanczos(A, 3, block_size=3, tol=1e-10)
    assert warm.all_converged and op.columns == warm.matvecs
    _check_pairs(A, warm, 3, "LA", rtol=1e-9)
    if columns >= 3:
        assert warm.matvecs < cold.matvecs
    assert op.calls >= 1 and warm.matvecs >= max(columns, 3)


def test_dependent_start_block_is_completed_at_random() -> None:
    A = _indefinite(80)
    v = torch.randn(80, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    res = block_lanczos(A, 3, block_size=3, tol=1e-10, V0=torch.stack([v, 2 * v, v], dim=1))
    _check_pairs(A, res, 3, "LA", rtol=1e-9)


def test_seeds_reproducible() -> None:
    A = _indefinite(150)
    a = block_lanczos(A, 4, block_size=2, tol=1e-6, seed=7)
    b = block_lanczos(A, 4, block_size=2, tol=1e-6, seed=7)
    c = block_lanczos(A, 4, block_size=2, tol=1e-6, seed=8)
    np.testing.assert_array_equal(a.eigenvalues, b.eigenvalues)
    assert a.matvecs == b.matvecs and torch.equal(a.vectors, b.vectors)
    assert not torch.equal(a.vectors, c.vectors)


@pytest.mark.parametrize("which", ["LA", "SA"], ids=["LA", "SA"])
@pytest.mark.parametrize("problem", ["mlp_problem", "cnn_problem"], ids=["mlp", "cnn-bn"])
def test_network_hessian(problem: str, which: str, request: pytest.FixtureRequest) -> None:
    obj, H = request.getfixturevalue(problem)
    op = HessianOperator(obj)
    res = block_lanczos(op, 4, block_size=4, which=which, tol=1e-10)
    assert res.all_converged
    evals = torch.linalg.eigvalsh(H).numpy()
    np.testing.assert_allclose(res.eigenvalues, _expected(evals, 4, which), rtol=1e-8)
    assert op.passes == res.passes and op.matvecs == res.matvecs
    for y, lam in zip(res.vectors.T, res.eigenvalues):
        torch.testing.assert_close(H @ y, lam * y, atol=1e-7 * abs(lam), rtol=0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"which": "BE"}, "which='BE'"),
        ({"k": 0}, "k=0"),
        ({"k": 9}, "k=9"),
        ({"tol": 0.0}, "tol=0.0"),
        ({"block_size": 0}, "block_size=0"),
        ({"block_size": 2.5}, "block_size=2.5"),
        ({"max_matvecs": 2, "k": 3}, "max_matvecs=2"),
        ({"ncv": 3, "k": 2, "block_size": 2}, "ncv=3"),
        ({"V0": torch.ones(5, 2, dtype=torch.float64)}, "V0 of shape"),
    ],
    ids=["which", "k0", "k-too-big", "tol", "block0", "block-float", "budget", "ncv", "V0"],
)
def test_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        block_lanczos(torch.eye(8, dtype=torch.float64), **kwargs)


def test_result_roundtrip_keeps_passes_and_reads_old_files(tmp_path) -> None:
    res = block_lanczos(_indefinite(60), 3, block_size=2, tol=1e-8)
    back = EigenResult.load(res.save(tmp_path / "eig.json"))
    assert back.passes == res.passes and back.method == "block-lanczos"
    np.testing.assert_array_equal(back.eigenvalues, res.eigenvalues)
    torch.testing.assert_close(back.vectors, res.vectors)
    old = res.to_dict()
    del old["passes"]  # a file written before the field existed
    assert EigenResult.from_dict(old).passes is None


def test_float32_operator_stops_at_its_rounding_level() -> None:
    """A tolerance below float32 rounding: explicit residuals stall near eps ||A||, which counts as
    converged (the eigenvalues are then float32-accurate), instead of spending the whole budget."""
    A = _indefinite(200)
    res = block_lanczos(A.float(), 3, block_size=3, tol=1e-12, max_matvecs=600)
    assert res.all_converged and res.matvecs < 600
    assert res.vectors.dtype == torch.float32
    np.testing.assert_allclose(res.eigenvalues, [50.0, 30.0, 20.0], rtol=1e-5)
    assert np.all(res.residuals <= 10 * float(torch.finfo(torch.float32).eps) * 60.0)


def test_sharpness_with_eigen_block_matches_dense(mlp_problem) -> None:
    obj, H = mlp_problem
    res = sharpness(obj, top_k=4, tol=1e-10, eigen_block=2)
    np.testing.assert_allclose(
        res.eigenvalues, _expected(torch.linalg.eigvalsh(H).numpy(), 4, "LA"), rtol=1e-8
    )
    assert any("block Lanczos, blocks of 2" in n for n in res.notes)
    assert SharpnessOptions(eigen_block="auto").eigen_block_size is None  # the benchmark's choice
    assert SharpnessOptions(eigen_block=1).eigen_block_size is None


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"eigen_block": 0}, "eigen_block=0 is not valid"),
        ({"eigen_block": "big"}, "eigen_block='big' is not valid"),
        ({"eigen_block": True}, "eigen_block=True is not valid"),
        (
            {"eigen_block": 2, "backend": "pyhessian"},
            "eigen_block=2 is not available with backend='pyhessian'",
        ),
    ],
    ids=["zero", "word", "bool", "pyhessian"],
)
def test_bad_eigen_block(options: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        SharpnessOptions(**options).validate(100)


def test_a_start_block_of_eigenvectors_certifies_them_at_once() -> None:
    """Why the sharpness tracker keeps its summed start: from a block holding the old top
    eigenvector (still an eigenvector) and a random column, the first Rayleigh-Ritz certifies the
    old pair, missing a larger eigenvalue whose direction is orthogonal to the old one."""
    A = torch.diag(torch.cat([torch.tensor([5.0, 6.0]), torch.linspace(0.0, 2.0, 38)]).double())
    e1 = torch.zeros(40, 1, dtype=torch.float64)
    e1[0] = 1.0
    r = torch.randn(40, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    res = block_lanczos(A, 1, block_size=2, tol=1e-4, V0=torch.cat([e1, r], dim=1))
    assert res.passes == 1 and res.all_converged
    assert res.eigenvalues[0] == pytest.approx(5.0)  # the true top is 6
    assert block_lanczos(A, 1, block_size=2, tol=1e-4).eigenvalues[0] == pytest.approx(6.0)
