"""PAC-Bayes flatness on a model whose error under Gaussian weight noise is known in closed form."""

from __future__ import annotations

import math
from statistics import NormalDist

import pytest
import torch
from torch import nn

from landscape.errors import ConfigError
from landscape.measures import MeasureOptions, pac_bayes_sharpness
from landscape.objective.core import Objective

Z90 = NormalDist().inv_cdf(0.9)  # 1.2816: P(z < -Z90) = 0.1


class OneWeightPerExample(nn.Module):
    """Example i (one-hot input e_i, label 0) is classified by weight w_i alone: logits (w_i, -w_i).

    Under noise u_i ~ N(0, s_i^2) example i is misclassified iff w_i + u_i < 0, with probability
    Phi(-w_i / s_i); with every w_i = a the expected error is Phi(-a / s) exactly.
    """

    def __init__(self, n: int, a: float) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.full((n,), a, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x @ self.w
        return torch.stack([s, -s], dim=1)


def _objective(a: float, n: int = 400) -> Objective:
    x = torch.eye(n, dtype=torch.float64)
    return Objective(OneWeightPerExample(n, a), (x, torch.zeros(n, dtype=torch.long)), batch_size=200)


def test_sigma_is_the_standard_deviation():
    # error(sigma) = Phi(-a / sigma) = 0.1  =>  1 / sigma^2 = (Z90 / a)^2 (passing sigma^2 as the
    # standard deviation would give Z90 / a instead: 0.64 vs 0.41 here)
    a = 2.0
    res = pac_bayes_sharpness(_objective(a), MeasureOptions(mc_samples=40, seed=3))
    expected = (Z90 / a) ** 2
    assert res.details["base_error"] == 0.0
    assert res.value == pytest.approx(expected, rel=0.03)
    assert res.stderr is not None and 0 < res.stderr < 0.03 * expected
    assert abs(res.value - expected) <= 4 * res.stderr
    assert res.details["deviation"] <= 0.1


def test_magnitude_aware_variance():
    # s^2 = sigma^2 a^2 + eps^2 with eps = 0.5: Phi(-a / s) = 0.1 => sigma^2 = ((a / Z90)^2 - eps^2) / a^2
    a, eps = 2.0, 0.5
    res = pac_bayes_sharpness(
        _objective(a), MeasureOptions(mc_samples=40, seed=4, pac_bayes_magnitude=True, pac_bayes_eps=eps)
    )
    sigma2 = ((a / Z90) ** 2 - eps**2) / a**2
    assert res.value == pytest.approx(1 / sigma2, rel=0.03)
    assert res.settings["variant"] == "pac-bayes-magnitude" and res.settings["magnitude_eps"] == eps


def test_same_seed_same_value_and_weights_restored():
    obj = _objective(1.0, n=50)
    before = obj.params[0].detach().clone()
    r1 = pac_bayes_sharpness(obj, MeasureOptions(mc_samples=8, seed=1, bisection_steps=8))
    r2 = pac_bayes_sharpness(obj, MeasureOptions(mc_samples=8, seed=1, bisection_steps=8))
    assert r1.value == r2.value and math.isfinite(r1.value)
    assert torch.equal(obj.params[0], before)


def test_needs_a_classifier():
    model = nn.Linear(2, 1).double()
    obj = Objective(
        model,
        (torch.randn(4, 2, dtype=torch.float64), torch.randn(4, 1, dtype=torch.float64)),
        loss_fn=nn.MSELoss(),
    )
    with pytest.raises(ConfigError, match="classification error"):
        pac_bayes_sharpness(obj, MeasureOptions(mc_samples=2))


class Constant(nn.Module):
    """Logits that ignore the weight: no noise changes the error."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(3, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0 * self.w.sum()


def test_error_that_never_moves_gives_zero():
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    obj = Objective(Constant(), (x, torch.tensor([0, 0])))
    res = pac_bayes_sharpness(obj, MeasureOptions(mc_samples=2))
    assert res.value == 0.0 and res.details["status"] == "unbounded" and res.stderr is None
