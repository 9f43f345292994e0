"""Trace estimators (unbiasedness, Hutch++ vs Hutchinson, target accuracy) and PyHessian-style power
iteration, against closed forms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from landscape.errors import ConfigError
from landscape.hessian import hutchinson, hutchpp, trace, xtrace
from landscape.hessian.operator import rademacher
from landscape.hessian.power import power_iteration
from landscape.hessian.results import TraceResult
from landscape.hessian.testing import spectrum_matrix
from landscape.hessian.trace_xtrace import xtrace_estimates


def _dense(seed: int = 0, n: int = 80) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    B = torch.randn(n, n, generator=g, dtype=torch.float64)
    return (B + B.T) / 2 + torch.diag(torch.linspace(0, 5, n, dtype=torch.float64))


@pytest.mark.parametrize(
    "method", ["hutchinson", "hutch++", "xtrace"], ids=["hutchinson", "hutch++", "xtrace"]
)
def test_unbiased_over_seeds(method: str) -> None:
    A = _dense()
    exact = float(torch.trace(A))
    ests = np.array([trace(A, method=method, matvecs=12, seed=s).estimate for s in range(300)])
    sem = ests.std(ddof=1) / np.sqrt(len(ests))
    assert abs(ests.mean() - exact) < 4 * sem
    # the per-run standard error estimates the spread of the estimator
    errs = np.array([trace(A, method=method, matvecs=12, seed=s).stderr for s in range(40)])
    assert 0.5 < np.median(errs) / ests.std(ddof=1) < 2.0


def _xtrace_by_definition(A: torch.Tensor, omega: torch.Tensor) -> torch.Tensor:
    """Algorithm 1.2 of Epperly, Tropp & Webber (2024), written out: one sketch per left-out vector."""
    k = omega.shape[1]
    out = []
    for i in range(k):
        Qi, _ = torch.linalg.qr(A @ torch.cat([omega[:, :i], omega[:, i + 1 :]], dim=1))
        r = omega[:, i] - Qi @ (Qi.T @ omega[:, i])
        out.append(float(torch.trace(Qi.T @ A @ Qi) + r @ A @ r))
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("k", [2, 5, 12], ids=["k2", "k5", "k12"])
def test_xtrace_equals_its_definition(k: int) -> None:
    A = _dense(3, n=40)
    omega = rademacher(40, k, generator=torch.Generator().manual_seed(k), dtype=torch.float64, device="cpu")
    fast = xtrace_estimates(A, omega, block_size=4)
    torch.testing.assert_close(fast, _xtrace_by_definition(A, omega), rtol=1e-9, atol=1e-9)
    res = xtrace(A, matvecs=2 * k + 1, seed=k)
    assert res.matvecs == 2 * k and res.samples == k


def test_xtrace_beats_hutchpp_on_decaying_spectrum() -> None:
    n = 300
    lam = torch.arange(1, n + 1, dtype=torch.float64) ** -2.0
    A = spectrum_matrix(lam, seed=2)
    exact = float(lam.sum())

    def rms(method: str, m: int) -> float:
        e = [trace(A, method=method, matvecs=m, seed=s).estimate - exact for s in range(30)]
        return float(np.sqrt(np.mean(np.square(e))))

    assert rms("xtrace", 60) < rms("hutch++", 60)
    assert rms("xtrace", 60) < rms("hutchinson", 60) / 5


def test_hutchinson_variance_closed_form() -> None:
    A = _dense(1)
    m = 10
    ests = np.array([hutchinson(A, matvecs=m, seed=s).estimate for s in range(400)])
    var = 2 * (float((A**2).sum()) - float((torch.diag(A) ** 2).sum())) / m
    assert 0.75 < ests.var(ddof=1) / var < 1.3


def test_hutchpp_error_falls_faster_on_decaying_spectrum() -> None:
    n = 300
    lam = torch.arange(1, n + 1, dtype=torch.float64) ** -2.0
    A = spectrum_matrix(lam, seed=2)
    exact = float(lam.sum())

    def rms(method: str, m: int) -> float:
        e = [trace(A, method=method, matvecs=m, seed=s).estimate - exact for s in range(30)]
        return float(np.sqrt(np.mean(np.square(e))))

    h_small, h_big = rms("hutchinson", 30), rms("hutchinson", 120)
    p_small, p_big = rms("hutch++", 30), rms("hutch++", 120)
    assert p_big < h_big / 3  # much better at equal matvecs
    # 4x matvecs: Hutchinson ~ 1/2, Hutch++ at least ~ 1/4 on this spectrum
    assert h_small / h_big < 2.6
    assert p_small / p_big > 3.5


def test_hutchpp_exact_when_sketch_spans_space() -> None:
    A = _dense(n=10)
    res = hutchpp(A, matvecs=30, seed=0)
    assert res.estimate == pytest.approx(float(torch.trace(A)), rel=1e-12)
    assert res.stderr == 0.0 and res.matvecs == 20


@pytest.mark.parametrize("method", ["hutchinson", "hutch++"], ids=["hutchinson", "hutch++"])
def test_target_relative_stderr(method: str) -> None:
    A = _dense(2) + 20 * torch.eye(80, dtype=torch.float64)
    res = trace(A, method=method, matvecs=12, rtol=0.01, max_matvecs=5000, seed=0)
    assert res.converged and res.stderr <= 0.01 * abs(res.estimate)
    assert res.matvecs < 5000
    assert abs(res.estimate - float(torch.trace(A))) < 5 * res.stderr
    tight = trace(A, method=method, matvecs=12, rtol=0.002, max_matvecs=5000, seed=0)
    assert tight.matvecs > res.matvecs


def test_target_not_reached_within_budget() -> None:
    res = hutchinson(_dense(3), rtol=1e-6, max_matvecs=20, seed=0)
    assert not res.converged and res.matvecs == 20


def test_trace_roundtrip(tmp_path) -> None:
    res = hutchpp(_dense(), matvecs=30)
    back = TraceResult.load(res.save(tmp_path / "t.json"))
    assert back == res


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"method": "xtrace2"}, "method='xtrace2'"),
        ({"matvecs": 1}, "matvecs=1"),
        ({"rtol": -1.0}, "rtol=-1.0"),
    ],
    ids=["method", "matvecs", "rtol"],
)
def test_trace_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        trace(_dense(), **kwargs)


def test_power_iteration_matches_dense_top_eigenvalues() -> None:
    lam = torch.cat([torch.tensor([10.0, 5.0, 2.5]), torch.rand(97) * 0.5]).double()
    A = spectrum_matrix(lam, seed=5)
    res = power_iteration(A, 3, max_iter=500, tol=1e-12, seed=0)
    np.testing.assert_allclose(res.eigenvalues, [10.0, 5.0, 2.5], rtol=1e-8)
    assert res.method == "power" and all(res.converged)


def test_power_iteration_stops_early_like_pyhessian() -> None:
    """The relative-change rule stops long before the eigenvalue is accurate on a small gap."""
    lam = torch.cat([torch.tensor([1.0, 0.97]), torch.rand(98) * 0.5]).double()
    A = spectrum_matrix(lam, seed=6)
    res = power_iteration(A, 1, max_iter=100, tol=1e-3, seed=0)
    assert res.converged[0] and res.matvecs < 100
    assert abs(res.eigenvalues[0] - 1.0) > 1e-4  # stopped early: visibly off
    assert res.residuals[0] > 1e-3


def test_power_iteration_finds_largest_magnitude() -> None:
    lam = torch.cat([torch.tensor([-9.0, 3.0]), torch.rand(48)]).double()
    res = power_iteration(spectrum_matrix(lam), 1, max_iter=1000, tol=1e-12)
    assert res.eigenvalues[0] == pytest.approx(-9.0, rel=1e-8)
