"""Fisher-Rao norm against linear least squares in closed form and a per-sample autograd loop."""

from __future__ import annotations

import pytest
import torch
from measure_helpers import mlp_objective
from torch import nn

from landscape.measures import MeasureOptions, fisher_rao_norm
from landscape.objective.core import Objective


def test_linear_least_squares_closed_form():
    # l_i = (a.x_i + b - y_i)^2, so <theta, grad l_i> = 2 r_i (a.x_i + b) with r_i the residual
    g = torch.Generator().manual_seed(0)
    X = torch.randn(10, 3, generator=g, dtype=torch.float64)
    y = torch.randn(10, 1, generator=g, dtype=torch.float64)
    model = nn.Linear(3, 1).double()
    obj = Objective(model, (X, y), loss_fn=nn.MSELoss(), batch_size=4, dtype=torch.float64)
    f = (X @ model.weight.detach().T + model.bias.detach()).squeeze(1)
    r = f - y.squeeze(1)
    expected = float((2 * r * f).pow(2).mean())
    res = fisher_rao_norm(obj)
    assert res.value == pytest.approx(expected, rel=1e-12)
    assert res.forward_passes == pytest.approx(1.0) and res.stderr is None and res.seed is None


def test_mlp_matches_per_sample_gradients():
    obj = mlp_objective(n=9, batch_size=4)
    total = 0.0
    for x, y, _ in obj.batches():
        for i in range(len(y)):
            loss = obj.batch_loss(x[i : i + 1], y[i : i + 1])
            gs = torch.autograd.grad(loss, obj.params)
            total += float(sum((p.detach() * gi).sum() for p, gi in zip(obj.params, gs))) ** 2
    assert fisher_rao_norm(obj).value == pytest.approx(total / 9, rel=1e-10)


def test_depth_factor():
    obj = mlp_objective(n=6)
    plain = fisher_rao_norm(obj)
    deep = fisher_rao_norm(obj, MeasureOptions(fisher_rao_depth=2))
    assert deep.value == pytest.approx(9 * plain.value, rel=1e-14)
    assert deep.settings == {"depth": 2, "depth_factor": 9.0}
