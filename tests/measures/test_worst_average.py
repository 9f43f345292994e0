"""Worst-case, average-case, Keskar and random-max sharpness on ``1/2 w^T A w`` at its minimum."""

from __future__ import annotations

import math

import pytest
import torch
from measure_helpers import quadratic_objective, spd

from landscape.errors import ConfigError
from landscape.measures import (
    MeasureOptions,
    average_sharpness,
    keskar_sharpness,
    random_max_sharpness,
    worst_sharpness,
)

D = 6
W_STAR = torch.tensor([1.0, -2.0, 0.5, 3.0, -1.5, 0.25], dtype=torch.float64)


def test_worst_l2_is_half_rho2_lambda_max():
    A = spd(D, 0)
    rho = 0.1
    res = worst_sharpness(
        quadratic_objective(A, W_STAR), MeasureOptions(rho=rho, steps=100, perturb_norm="l2")
    )
    expected = rho**2 * float(torch.linalg.eigvalsh(A).max()) / 2
    assert res.value == pytest.approx(expected, rel=1e-9)
    assert res.details["max_constraint"] <= 1 + 1e-12
    assert res.stderr is None  # one batch
    # the base loss and 101 ascent points, one pass over the 6 examples each; no backward at the base
    assert res.forward_passes == pytest.approx(res.details["loss_evaluations"]) == 102
    assert res.backward_passes == pytest.approx(101)


def test_worst_adaptive_l2_uses_the_scaled_hessian():
    A = spd(D, 1)
    rho = 0.05
    res = worst_sharpness(quadratic_objective(A, W_STAR), MeasureOptions(rho=rho, steps=40, adaptive=True))
    C = torch.diag(W_STAR.abs())
    expected = rho**2 * float(torch.linalg.eigvalsh(C @ A @ C).max()) / 2
    assert res.value == pytest.approx(expected, rel=1e-6)


def test_worst_linf_with_diagonal_a_is_half_rho2_trace():
    A = spd(D, 2, diagonal=True)
    rho = 0.2
    res = worst_sharpness(
        quadratic_objective(A, W_STAR), MeasureOptions(rho=rho, steps=10, perturb_norm="linf")
    )
    assert res.value == pytest.approx(rho**2 * float(torch.trace(A)) / 2, rel=1e-12)
    assert res.details["max_constraint"] <= 1 + 1e-12


def test_worst_m_sharpness_averages_batches_with_stderr():
    # 12 examples, m = 4: three batches, each its own quadratic; the mean of the per-batch maxima
    g = torch.Generator().manual_seed(3)
    X = torch.randn(12, 3, generator=g, dtype=torch.float64)
    w = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    model = torch.nn.Linear(3, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(w.reshape(1, 3))
    from landscape.objective.core import Objective

    obj = Objective(
        model, (X, X @ w.reshape(3, 1)), loss_fn=torch.nn.MSELoss(), batch_size=5, dtype=torch.float64
    )
    rho = 0.1
    res = worst_sharpness(obj, MeasureOptions(rho=rho, m=4, steps=30, restarts=2))
    per_batch = [rho**2 * float(torch.linalg.eigvalsh(2 * Xb.T @ Xb / 4).max()) / 2 for Xb in X.split(4)]
    assert res.details["per_batch"] == pytest.approx(per_batch, rel=1e-6)
    mean = sum(per_batch) / 3
    sd = math.sqrt(sum((v - mean) ** 2 for v in per_batch) / 2)
    assert res.value == pytest.approx(mean, rel=1e-6)
    assert res.stderr == pytest.approx(sd / math.sqrt(3), rel=1e-5)
    assert res.settings["num_batches"] == 3 and res.settings["samples_used"] == 12


def test_worst_reports_a_stall_when_the_loss_cannot_grow():
    # a model whose output ignores its weight: every ascent stalls at gain 0
    class Flat(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))

        def forward(self, x):
            return x + 0 * self.w.sum()

    from landscape.objective.core import Objective

    x = torch.randn(4, 1, dtype=torch.float64)
    obj = Objective(Flat(), (x, torch.zeros(4, 1, dtype=torch.float64)), loss_fn=torch.nn.MSELoss())
    res = worst_sharpness(obj, MeasureOptions(steps=5))
    assert res.value == 0.0 and res.details["stalled"] is True


def test_worst_is_not_stalled_while_still_climbing():
    A = spd(D, 0)
    res = worst_sharpness(quadratic_objective(A, W_STAR), MeasureOptions(rho=0.1, steps=3))
    assert res.details["stalled"] is False


@pytest.mark.parametrize("adaptive", [False, True], ids=["plain", "adaptive"])
def test_average_is_half_rho2_trace(adaptive):
    A = spd(D, 4)
    rho = 0.1
    res = average_sharpness(
        quadratic_objective(A, W_STAR), MeasureOptions(rho=rho, adaptive=adaptive, mc_samples=400, seed=5)
    )
    C = torch.diag(W_STAR.abs()) if adaptive else torch.eye(D, dtype=torch.float64)
    expected = rho**2 * float(torch.trace(C @ A @ C)) / 2
    assert res.stderr is not None and 0 < res.stderr < 0.1 * expected
    assert abs(res.value - expected) <= 4 * res.stderr
    assert res.forward_passes == pytest.approx(1 + 2 * 400)


def test_average_antithetic_pairs_are_exact_quadratic_forms():
    # on a quadratic each antithetic pair is 1/2 delta^T A delta exactly, even away from the minimum
    A = spd(D, 6)
    w = W_STAR + 0.3
    rho = 0.1
    res = average_sharpness(quadratic_objective(A, W_STAR, w), MeasureOptions(rho=rho, mc_samples=3, seed=2))
    gen = torch.Generator().manual_seed(2)
    forms = [
        0.5 * rho**2 * float(z @ A @ z)
        for z in (torch.randn(D, generator=gen, dtype=torch.float64) for _ in range(3))
    ]
    assert res.value == pytest.approx(sum(forms) / 3, rel=1e-9)


def test_keskar_in_the_box():
    A = spd(D, 7, diagonal=True)
    eps = 1e-2
    res = keskar_sharpness(quadratic_objective(A, W_STAR), MeasureOptions(eps=eps, steps=10))
    # at the minimum L(w) = 0; the max of 1/2 z^T A z over |z_i| <= eps (|w_i| + 1) is at a corner
    corner = eps * (W_STAR.abs() + 1)
    expected = 100 * float(0.5 * corner @ A @ corner) / (1 + 0)
    assert res.value == pytest.approx(expected, rel=1e-12)
    assert res.details["max_constraint"] <= 1 + 1e-12


def test_random_max_matches_its_definition():
    A = spd(D, 8)
    eps = 0.05
    res = random_max_sharpness(
        quadratic_objective(A, W_STAR), MeasureOptions(eps=eps, random_max_samples=7, seed=9)
    )
    gen = torch.Generator().manual_seed(9)
    increases = [
        0.5 * eps**2 * float(z @ A @ z)
        for z in (torch.randn(D, generator=gen, dtype=torch.float64) for _ in range(7))
    ]
    assert res.details["increases"] == pytest.approx(increases, rel=1e-9)
    assert res.value == pytest.approx(max(increases) / eps, rel=1e-9)
    assert res.settings == {"eps": eps, "random_max_samples": 7}


def test_defaults_of_eps_are_recorded():
    obj = quadratic_objective(spd(D, 0), W_STAR)
    assert random_max_sharpness(obj).settings["eps"] == 0.01
    assert keskar_sharpness(obj, MeasureOptions(steps=2)).settings["eps"] == 1e-3


def test_m_larger_than_the_sample_is_refused():
    with pytest.raises(ConfigError, match="m=100"):
        worst_sharpness(quadratic_objective(spd(D, 0), W_STAR), MeasureOptions(m=100))


def test_loader_data_gives_the_same_values_as_tensors():
    from torch.utils.data import DataLoader, TensorDataset

    from landscape.objective.core import Objective

    A = spd(D, 0)
    tensors = quadratic_objective(A, W_STAR)
    x, y = tensors._cached[0]
    model = torch.nn.Linear(D, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(W_STAR.reshape(1, D))
    loader = DataLoader(TensorDataset(x, y), batch_size=4, shuffle=False)
    from_loader = Objective(model, loader, loss_fn=torch.nn.MSELoss(), dtype=torch.float64)
    opts = MeasureOptions(rho=0.1, steps=5, m=3, seed=1)
    a, b = worst_sharpness(tensors, opts), worst_sharpness(from_loader, opts)
    assert a.details["per_batch"] == pytest.approx(b.details["per_batch"], rel=1e-12)
    opts = MeasureOptions(rho=0.1, mc_samples=5, seed=1)
    assert average_sharpness(tensors, opts).value == pytest.approx(
        average_sharpness(from_loader, opts).value, rel=1e-12
    )


def test_worst_adaptive_linf_with_diagonal_a():
    # |delta_i| <= rho |w_i|: the corner gives rho^2 sum_i a_i w_i^2 / 2
    A = spd(D, 9, diagonal=True)
    rho = 0.05
    res = worst_sharpness(
        quadratic_objective(A, W_STAR), MeasureOptions(rho=rho, steps=10, perturb_norm="linf", adaptive=True)
    )
    expected = rho**2 * float((torch.diagonal(A) * W_STAR**2).sum()) / 2
    assert res.value == pytest.approx(expected, rel=1e-12)
