"""Newton-summary: partitions, H-bar/g-bar/D against closed forms, the Nesterov learning rates."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from landscape.errors import ConfigError
from landscape.optim import (
    NewtonSummary,
    compute_hg,
    nesterov_lrs,
    partition,
)


class Quartic(nn.Module):
    """L(w; x) = mean_k 1/4 sum_i x_ki w_i^4 + 1/2 w^T A w - b^T w, w split into tensors of sizes 3 and 2."""

    def __init__(self, w0, A, b):
        super().__init__()
        self.w1 = nn.Parameter(w0[:3].clone())
        self.w2 = nn.Parameter(w0[3:].clone())
        self.A, self.b = A, b

    def w(self):
        return torch.cat([self.w1, self.w2])

    def loss(self, x, target=None):
        w = self.w()
        return 0.25 * (x * w.pow(4)).sum(1).mean() + 0.5 * w @ self.A @ w - self.b @ w


@pytest.fixture
def quartic(quadratic):
    g = torch.Generator().manual_seed(5)
    x = torch.rand(10, 5, generator=g, dtype=torch.float64) + 0.5
    model = Quartic(quadratic.w0, quadratic.A, quadratic.b)
    loader = [(x[:4], None), (x[4:8], None), (x[8:], None)]  # uneven batches: sample weighting matters
    return model, x.mean(0), loader


def closed_forms(model, c, u_groups):
    w = model.w().detach()
    g = c * w**3 + model.A @ w - model.b
    H = torch.diag(3 * c * w**2) + model.A
    us = []
    for sizes in u_groups:
        u = torch.zeros(5, dtype=torch.float64)
        for lo, hi in sizes:
            u[lo:hi] = g[lo:hi]
        us.append(u)
    U = torch.stack(us)
    H_bar = U @ H @ U.T
    g_bar = U @ g
    order3 = torch.stack([(6 * c * w * u**3).sum() for u in us])
    return g, H_bar, g_bar, order3


@pytest.mark.parametrize(
    ("kind", "slices"),
    [("canonical", [[(0, 3)], [(3, 5)]]), ("trivial", [[(0, 5)]])],
    ids=["canonical", "trivial"],
)
def test_compute_hg_matches_closed_form(quartic, kind, slices):
    model, c, loader = quartic
    groups, names = partition(model, kind)
    loss = model.loss(torch.cat([b[0] for b in loader]))
    grads = torch.autograd.grad(loss, list(model.parameters()))
    gmap = dict(zip(model.parameters(), grads))
    dirs = [[gmap[p] for p in grp["params"]] for grp in groups]
    summary = compute_hg([grp["params"] for grp in groups], dirs, model.loss, loader)
    _, H_bar, g_bar, order3 = closed_forms(model, c, slices)
    torch.testing.assert_close(summary.H_bar, H_bar, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(summary.g_bar, g_bar, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(summary.order3, order3, rtol=1e-10, atol=1e-12)
    assert summary.num_samples == 10
    assert sum(len(n) for n in names) == 2


def test_partitions_of_mlp(mlp_factory):
    model = mlp_factory()
    n_tensors = len(list(model.parameters()))
    assert len(partition(model, "canonical")[0]) == n_tensors == 6
    assert len(partition(model, "trivial")[0]) == 1
    groups, names = partition(model, "wb")
    assert [len(g["params"]) for g in groups] == [3, 3]
    assert all(n.endswith("weight") for n in names[0]) and all(n.endswith("bias") for n in names[1])
    with pytest.raises(ConfigError, match="partition='layers'.*'canonical', 'trivial', 'wb'"):
        partition(model, "layers")


def test_trivial_partition_on_quadratic_gives_exact_line_minimizer(quadratic):
    q = quadratic
    params = q.make_params()
    loader = [(torch.zeros(1), None)]

    def full_loss(x, t):
        return q.value(torch.cat([p.view(-1) for p in params]))

    opt = NewtonSummary([{"params": params}], full_loss, loader, damping=1.0, damping_int=1.0)
    opt.step(q.closure_for(params))
    g = q.grad(q.w0)
    eta = float(g @ g / (g @ q.A @ g))
    assert opt.param_groups[0]["eta"] == pytest.approx(eta, rel=1e-12)
    torch.testing.assert_close(q.flat(params), q.w0 - eta * g, rtol=1e-12, atol=1e-14)
    # exact minimizer along u: the new gradient is orthogonal to u
    assert float(q.grad(q.flat(params)) @ g) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(
    ("H", "g", "o3", "lam"),
    [(2.0, 1.5, 0.8, 1.0), (-0.5, 2.0, 3.0, 2.0), (0.1, 0.3, 10.0, 0.5)],
    ids=["convex", "negative-curvature", "strong-third-order"],
)
def test_nesterov_scalar_matches_root_of_quadratic(H, g, o3, lam):
    # S = 1: eta = g / (H + lam/2 |o3| eta) with eta > 0  <=>  lam/2 |o3| eta^2 + H eta - g = 0
    c = 0.5 * lam * abs(o3)
    expected = (-H + math.sqrt(H * H + 4 * c * g)) / (2 * c)
    eta = nesterov_lrs(
        torch.tensor([[H]], dtype=torch.float64),
        torch.tensor([g], dtype=torch.float64),
        torch.tensor([o3], dtype=torch.float64),
        damping_int=lam,
    )
    assert float(eta) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("indefinite", [False, True], ids=["pd", "indefinite"])
def test_nesterov_multigroup_fixed_point_and_largest_root(indefinite):
    gen = torch.Generator().manual_seed(11)
    M = torch.randn(3, 3, generator=gen, dtype=torch.float64)
    H = M @ M.T + 0.1 * torch.eye(3, dtype=torch.float64)
    if indefinite:
        H = H - 2.5 * torch.eye(3, dtype=torch.float64) * torch.linalg.eigvalsh(H).max()
    g = torch.randn(3, generator=gen, dtype=torch.float64)
    o3 = torch.rand(3, generator=gen, dtype=torch.float64) + 0.2
    lam = 1.5
    eta = nesterov_lrs(H, g, o3, damping_int=lam)
    D = o3.abs().pow(1 / 3)
    r = float(torch.linalg.vector_norm(D * eta))
    Mr = H + 0.5 * lam * r * torch.diag(D**2)
    torch.testing.assert_close(Mr @ eta, g, rtol=1e-10, atol=1e-12)
    assert float(torch.linalg.eigvalsh(Mr).min()) > 0  # the root on the positive-definite branch


def test_newton_summary_step_with_cubic_term(quartic):
    model, c, loader = quartic
    x_all = torch.cat([b[0] for b in loader])
    groups, _ = partition(model, "trivial")
    opt = NewtonSummary(groups, model.loss, loader, damping=0.5, damping_int=2.0)

    def closure():
        opt.zero_grad()
        loss = model.loss(x_all)
        loss.backward()
        return loss

    w0 = model.w().detach().clone()
    opt.step(closure)
    g, H_bar, g_bar, order3 = closed_forms(Quartic(w0, model.A, model.b), c, [[(0, 5)]])
    cc = 0.5 * 2.0 * abs(float(order3))
    eta = (-float(H_bar) + math.sqrt(float(H_bar) ** 2 + 4 * cc * float(g_bar))) / (2 * cc)
    torch.testing.assert_close(model.w().detach(), w0 - 0.5 * eta * g, rtol=1e-10, atol=1e-12)


def test_remove_negative(quadratic):
    q = quadratic
    params = q.make_params()

    def full_loss(x, t):
        return q.value(torch.cat([p.view(-1) for p in params]))

    def ascent_closure():  # u = -g: an ascent direction, so the Newton rate along u is negative
        for p in params:
            p.grad = None
        loss = -q.value(torch.cat([p.view(-1) for p in params]))
        loss.backward()
        return loss

    for remove in (False, True):
        ps = [p.detach().clone() for p in params]
        opt = NewtonSummary(
            [{"params": params}], full_loss, [(None, None)], damping_int=0.0, remove_negative=remove
        )
        opt.step(ascent_closure)
        if remove:
            assert opt.param_groups[0]["eta"] == 0.0
            torch.testing.assert_close(q.flat(params), q.flat(ps))
        else:
            g = q.grad(q.flat(ps))
            assert opt.param_groups[0]["eta"] == pytest.approx(-float(g @ g / (g @ q.A @ g)), rel=1e-12)
        with torch.no_grad():
            for p, s in zip(params, ps):
                p.copy_(s)


def test_period_and_rate_smoothing(quadratic):
    q = quadratic
    params = q.make_params()

    def full_loss(x, t):
        return q.value(torch.cat([p.view(-1) for p in params]))

    opt = NewtonSummary(
        [{"params": [params[0]]}, {"params": [params[1]]}],
        full_loss,
        [(None, None)],
        damping=0.5,
        damping_int=0.0,
        period_hg=2,
        mom_lrs=0.25,
    )
    closure = q.closure_for(params)
    opt.step(closure)
    eta1 = [g["eta"] for g in opt.param_groups]
    assert eta1 == [g["eta_raw"] for g in opt.param_groups]
    w1 = q.flat(params).clone()
    opt.step(closure)  # reuses eta1 (period 2)
    g1 = q.grad(w1)
    expected = w1 - 0.5 * torch.cat([eta1[0] * g1[:3], eta1[1] * g1[3:]])
    torch.testing.assert_close(q.flat(params), expected, rtol=1e-12, atol=1e-14)
    opt.step(closure)  # recomputes and smooths
    for grp, e_old in zip(opt.param_groups, eta1):
        assert grp["eta"] == pytest.approx(0.25 * e_old + 0.75 * grp["eta_raw"], rel=1e-12)
        assert grp["eta_raw"] != pytest.approx(e_old)


def test_newton_summary_validation(quadratic):
    params = quadratic.make_params()
    with pytest.raises(ConfigError, match="hg_loader=None"):
        NewtonSummary(params, lambda x, t: x, None)
    with pytest.raises(ConfigError, match="mom_lrs=1.0"):
        NewtonSummary(params, lambda x, t: x, [], mom_lrs=1.0)
    with pytest.raises(ConfigError, match="period_hg=0"):
        NewtonSummary(params, lambda x, t: x, [], period_hg=0)
