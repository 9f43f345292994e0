"""Relative flatness against dense Hessian blocks; gradient-Hessian overlap against dense eigenvectors."""

from __future__ import annotations

import pytest
import torch
from measure_helpers import mlp_objective, quadratic_objective, spd

from landscape.errors import ConfigError
from landscape.measures import MeasureOptions, gradient_overlap, relative_flatness
from landscape.objective.core import Objective


def _dense_layer_hessian(obj: Objective, idx: int) -> torch.Tensor:
    W0 = obj.params[idx].detach()
    names = obj.param_names
    full = obj.param_dict()

    def loss(w: torch.Tensor) -> torch.Tensor:
        d = dict(full)
        d[names[idx]] = w.reshape(W0.shape)
        return sum(wt * obj.functional_batch_loss(d, x, y) for x, y, wt in obj.batches())

    return torch.autograd.functional.hessian(loss, W0.reshape(-1))


def _petzka(W: torch.Tensor, H: torch.Tensor) -> float:
    out_dim, in_dim = W.shape
    H4 = H.reshape(out_dim, in_dim, out_dim, in_dim)
    total = 0.0
    for s in range(out_dim):
        for t in range(out_dim):
            total += float(W[s] @ W[t]) * float(torch.diagonal(H4[s, :, t, :]).sum())
    return total


@pytest.mark.parametrize("layer", ["0", "2.weight"], ids=["hidden-by-module", "head-by-parameter"])
def test_exact_relative_flatness_matches_dense_blocks(layer, monkeypatch):
    import landscape.measures.relative as rf

    monkeypatch.setattr(rf, "EXACT_CHUNK", 7)  # several chunks with a ragged last one
    obj = mlp_objective(n=20, batch_size=7)
    res = relative_flatness(obj, MeasureOptions(layer=layer, relative_flatness_method="exact"))
    idx = obj.param_names.index(layer if layer.endswith("weight") else f"{layer}.weight")
    expected = _petzka(obj.params[idx].detach(), _dense_layer_hessian(obj, idx))
    assert res.value == pytest.approx(expected, rel=1e-10)
    W = obj.params[idx]
    assert res.hvps == W.shape[1] * min(W.shape)  # in * rank, below the in * out of a dense block for 4x5
    assert res.stderr is None and res.settings["method"] == "exact"


def test_hutchinson_relative_flatness_is_unbiased():
    obj = mlp_objective(n=20)
    idx = obj.param_names.index("0.weight")
    expected = _petzka(obj.params[idx].detach(), _dense_layer_hessian(obj, idx))
    res = relative_flatness(
        obj, MeasureOptions(layer="0", relative_flatness_method="hutchinson", hutchinson_probes=200, seed=1)
    )
    assert res.stderr is not None and 0 < res.stderr < 0.2 * abs(expected)
    assert abs(res.value - expected) <= 4 * res.stderr
    assert res.hvps == 200 and res.seed == 1


def test_relative_flatness_bad_layer():
    obj = mlp_objective(n=4)
    with pytest.raises(
        ConfigError,
        match=r"layer='0.bias' is not a linear layer's weight; choose one of \['0.weight', '2.weight'\]",
    ):
        relative_flatness(obj, MeasureOptions(layer="0.bias"))
    with pytest.raises(ConfigError, match="layer=None"):
        relative_flatness(obj, MeasureOptions())


def _overlap_problem():
    A = spd(6, 3)
    w_star = torch.zeros(6, dtype=torch.float64)
    w = torch.tensor([1.0, -0.5, 0.3, 0.8, -1.2, 0.4], dtype=torch.float64)
    return A, w, quadratic_objective(A, w_star, w)


@pytest.mark.parametrize("k", [1, 3])
def test_overlap_matches_dense_eigenvectors(k):
    A, w, obj = _overlap_problem()
    lam, U = torch.linalg.eigh(A)
    g = A @ w
    Pg = U[:, -k:] @ (U[:, -k:].T @ g)
    expected = float(Pg @ Pg / (g @ g))
    res = gradient_overlap(obj, MeasureOptions(k=k, lanczos_tol=1e-10))
    assert res.value == pytest.approx(expected, rel=1e-8)
    assert res.details["eigenvalues"] == pytest.approx(sorted(lam[-k:].tolist(), reverse=True), rel=1e-8)
    assert res.hvps > 0 and res.settings["eigenvectors"] == "lanczos"


def test_overlap_reuses_given_eigenvectors():
    A, w, obj = _overlap_problem()
    _, U = torch.linalg.eigh(A)
    g = A @ w
    V = U[:, -2:]
    expected = float((V.T @ g).pow(2).sum() / (g @ g))
    as_lists = [[V[:, i].reshape(1, 6)] for i in range(2)]
    for given in (V, as_lists, 3.0 * V):  # a scaled basis spans the same space
        res = gradient_overlap(obj, eigenvectors=given)
        assert res.value == pytest.approx(expected, rel=1e-12)
        assert res.hvps == 0 and res.settings["eigenvectors"] == "given"


def test_overlap_refuses_a_zero_gradient_and_misfit_vectors():
    A = spd(6, 3)
    obj = quadratic_objective(A, torch.zeros(6, dtype=torch.float64))
    with pytest.raises(ConfigError, match="gradient is exactly zero"):
        gradient_overlap(obj, eigenvectors=torch.eye(6, dtype=torch.float64)[:, :2])
    with pytest.raises(ConfigError, match=r"shape \(5, 2\)"):
        gradient_overlap(obj, eigenvectors=torch.zeros(5, 2, dtype=torch.float64))
