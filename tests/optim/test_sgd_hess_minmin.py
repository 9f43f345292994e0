"""SGD-Hess and Min-Min against closed forms on quadratics; Min-Min sampler and scheduler."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from landscape.errors import ConfigError, DataError, LandscapeError
from landscape.optim import (
    MinMinBatchSampler,
    MinMinOptimizer,
    MinMinScheduler,
    SGDHess,
    minmin_training_step,
)


def diag_quadratic_closure(params, a, b, *, create_graph):
    def closure():
        for p in params:
            p.grad = None
        w = torch.cat([p.view(-1) for p in params])
        loss = 0.5 * (a * w * w).sum() - b @ w
        loss.backward(create_graph=create_graph)
        return loss

    return closure


@pytest.mark.parametrize("rho", [0.0, 0.5, 2.0], ids=["rho0", "rho0.5", "rho2"])
def test_sgd_hess_step_on_diagonal_quadratic(rho):
    # With A diagonal, |A z| = diag(A) for every Rademacher z: d = g + rho * g * diag(A) exactly.
    a = torch.tensor([0.5, -1.0, 2.0, 3.0], dtype=torch.float64)
    b = torch.tensor([1.0, -2.0, 0.5, 0.25], dtype=torch.float64)
    w0 = torch.tensor([0.3, -0.7, 1.1, 0.2], dtype=torch.float64)
    params = [nn.Parameter(w0[:2].clone()), nn.Parameter(w0[2:].clone())]
    opt = SGDHess(params, lr=0.1, rho=rho)
    assert opt.needs_create_graph
    opt.step(diag_quadratic_closure(params, a, b, create_graph=True))
    g = a * w0 - b
    expected = w0 - 0.1 * (g + rho * g * a.abs())
    torch.testing.assert_close(torch.cat([p.detach() for p in params]), expected, rtol=1e-12, atol=1e-14)
    assert all(p.grad.grad_fn is None for p in params)


def test_sgd_hess_reuses_probe_between_periods():
    a = torch.tensor([1.0, 4.0], dtype=torch.float64)
    b = torch.zeros(2, dtype=torch.float64)
    params = [nn.Parameter(torch.tensor([1.0, 1.0], dtype=torch.float64))]
    opt = SGDHess(params, lr=0.1, rho=1.0, hessian_period=2)
    opt.step(diag_quadratic_closure(params, a, b, create_graph=True))
    assert not opt.needs_create_graph
    w1 = params[0].detach().clone()
    opt.step(diag_quadratic_closure(params, a, b, create_graph=False))  # no graph needed: probe reused
    g = a * w1
    torch.testing.assert_close(params[0].detach(), w1 - 0.1 * (g + g * a))
    assert opt.needs_create_graph
    with pytest.raises(LandscapeError, match="create_graph=True"):
        opt.step(diag_quadratic_closure(params, a, b, create_graph=False))


def test_sgd_hess_probe_is_rademacher_hz(quadratic):
    # Non-diagonal A: the stored diagonal is |A z| for a +-1 vector z; check it is one of those.
    q = quadratic
    params = [nn.Parameter(q.w0.clone())]
    opt = SGDHess(params, lr=0.1, rho=1.0, seed=3)

    def closure():
        params[0].grad = None
        loss = q.value(params[0])
        loss.backward(create_graph=True)
        return loss

    opt.step(closure)
    hd = opt.state[params[0]]["hess_diag"]
    signs = torch.tensor([[(k >> i) & 1 for i in range(5)] for k in range(32)], dtype=torch.float64) * 2 - 1
    candidates = (signs @ q.A).abs()
    assert torch.isclose(candidates, hd.unsqueeze(0), rtol=1e-12, atol=1e-12).all(dim=1).any()


def test_sgd_hess_validation():
    p = [nn.Parameter(torch.zeros(2))]
    with pytest.raises(ConfigError, match="hessian_period=0"):
        SGDHess(p, lr=0.1, hessian_period=0)
    with pytest.raises(ConfigError, match="momentum=1.0"):
        SGDHess(p, lr=0.1, momentum=1.0)


# ----------------------------------------------------------------------------- Min-Min
class TwoQuadratics(nn.Module):
    """Small-batch loss f_s and large-batch loss f_l, both quadratics in the same parameter w."""

    def __init__(self, w0):
        super().__init__()
        self.w = nn.Parameter(w0.clone())


@pytest.mark.parametrize("rho", [0.0, 0.1, 1.0], ids=["rho0", "rho0.1", "rho1"])
def test_minmin_step_matches_closed_form(quadratic, rho):
    q = quadratic
    g = torch.Generator().manual_seed(7)
    As = torch.diag(torch.rand(5, generator=g, dtype=torch.float64) + 0.5)
    bs = torch.randn(5, generator=g, dtype=torch.float64)
    model = TwoQuadratics(q.w0)
    base = torch.optim.SGD(model.parameters(), lr=0.5)
    opt = MinMinOptimizer(model, base, inner_step_size=rho, outer_lr=0.05)
    assert base.param_groups[0]["lr"] == 0.05

    def closure(phase):
        opt.zero_grad()
        w = model.w
        loss = 0.5 * w @ As @ w - bs @ w if phase == "small" else q.value(w)
        loss.backward()
        return loss

    loss = opt.step(closure)
    w0 = q.w0
    gs = As @ w0 - bs
    w_tilde = w0 - rho * gs / gs.norm()
    expected = w0 - 0.05 * q.grad(w_tilde)
    torch.testing.assert_close(model.w.detach(), expected, rtol=1e-12, atol=1e-14)
    assert float(loss) == pytest.approx(float(0.5 * w0 @ As @ w0 - bs @ w0), rel=1e-12)
    assert "old_p" not in opt.state[model.w]


def test_minmin_restores_theta_bitwise(quadratic):
    model = TwoQuadratics(quadratic.w0)
    opt = MinMinOptimizer(model, torch.optim.SGD(model.parameters(), lr=0.0), inner_step_size=0.3)
    before = model.w.detach().clone()
    quadratic.value(model.w).backward()
    opt.first_step(zero_grad=True)
    assert not torch.equal(model.w.detach(), before)
    quadratic.value(model.w).backward()
    opt.second_step()
    assert torch.equal(model.w.detach(), before)


def test_minmin_training_step_on_batches():
    torch.manual_seed(0)
    model = nn.Linear(3, 1).double()
    x = torch.randn(40, 3, dtype=torch.float64)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]], dtype=torch.float64)
    sampler = MinMinBatchSampler((x, y), small_batch_size=8, large_batch_size=16, seed=0)
    opt = MinMinOptimizer(model, torch.optim.SGD(model.parameters(), lr=0.1), inner_step_size=0.05)
    loss_fn = nn.MSELoss()
    first = loss_fn(model(x), y).item()
    for _ in range(30):
        small, large = sampler.get_pair()
        minmin_training_step(model, opt, small, large, loss_fn)
    assert loss_fn(model(x), y).item() < 0.2 * first


def test_sampler_pairs_are_disjoint_and_resumable():
    x = torch.arange(50).double().unsqueeze(1)
    y = torch.arange(50)
    s = MinMinBatchSampler((x, y), small_batch_size=4, large_batch_size=12, seed=5)
    assert len(s) == 3
    seen = []
    for small, large in s:
        assert small[0].shape == (4, 1) and large[0].shape == (12, 1)
        ids_s, ids_l = set(small[1].tolist()), set(large[1].tolist())
        assert not ids_s & ids_l
        seen += [*ids_s, *ids_l]
    assert len(seen) == len(set(seen)) == 48  # no repeats within an epoch
    state = s.state_dict()
    nxt = s.get_pair()
    s2 = MinMinBatchSampler((x, y), small_batch_size=4, large_batch_size=12, seed=0)
    s2.load_state_dict(state)
    assert torch.equal(s2.get_pair()[1][1], nxt[1][1])
    with pytest.raises(DataError, match="exceeds the dataset size 50"):
        MinMinBatchSampler((x, y), small_batch_size=40, large_batch_size=12)


@pytest.mark.parametrize(
    ("schedule", "f"),
    [
        ("constant", lambda t, T: 1.0),
        ("linear", lambda t, T: 1 - t / T),
        ("cosine", lambda t, T: 0.5 * (1 + math.cos(math.pi * t / T))),
        ("exponential", lambda t, T: 0.01 ** (t / T)),
    ],
    ids=["constant", "linear", "cosine", "exponential"],
)
def test_scheduler_formulas(schedule, f):
    model = nn.Linear(2, 1)
    opt = MinMinOptimizer(model, torch.optim.SGD(model.parameters(), lr=1.0))
    sched = MinMinScheduler(opt, 0.2, 0.1, schedule, 10)
    for t in range(1, 13):
        sched.step()
        inner, outer = sched.get_last_lr()
        tt = min(t, 10)
        assert inner == pytest.approx(0.2 * f(tt, 10), abs=1e-15)
        assert outer == pytest.approx(0.1 * f(tt, 10), abs=1e-15)
        assert opt.param_groups[0]["lr"] == outer and opt.param_groups[0]["inner_step_size"] == inner
    with pytest.raises(ConfigError, match="schedule_type='step'.*'cosine'"):
        MinMinScheduler(opt, 0.2, 0.1, "step", 10)
