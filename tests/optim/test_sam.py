"""SAM, ASAM, SAM-direction and SAM-magnitude against closed forms on a quadratic."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from landscape.errors import ConfigError
from landscape.optim import SAM, SAMDirection, SAMMagnitude, disable_running_stats, enable_running_stats

LR = 0.1


def sam_perturbation(q, w, rho, adaptive):
    g = q.grad(w)
    if adaptive:
        return rho * w.pow(2) * g / torch.linalg.vector_norm(w.abs() * g)
    return rho * g / torch.linalg.vector_norm(g)


@pytest.mark.parametrize("rho", [0.05, 0.5], ids=["rho0.05", "rho0.5"])
@pytest.mark.parametrize("adaptive", [False, True], ids=["sam", "asam"])
@pytest.mark.parametrize("api", ["closure", "two-steps"])
def test_one_sam_step_matches_closed_form(quadratic, rho, adaptive, api):
    q = quadratic
    params = q.make_params()
    opt = SAM(params, torch.optim.SGD, rho=rho, adaptive=adaptive, lr=LR)
    closure = q.closure_for(params)
    w = q.w0
    if api == "closure":
        loss = opt.step(closure)
        assert float(loss) == pytest.approx(float(q.value(w)), rel=1e-12)
    else:
        closure()
        opt.first_step(zero_grad=True)
        torch.testing.assert_close(
            q.flat(params), w + sam_perturbation(q, w, rho, adaptive), rtol=1e-10, atol=1e-12
        )
        closure()
        opt.second_step(zero_grad=True)
    e = sam_perturbation(q, w, rho, adaptive)
    expected = w - LR * q.grad(w + e)
    torch.testing.assert_close(q.flat(params), expected, rtol=1e-10, atol=1e-12)


def test_second_step_restores_parameters_bitwise(quadratic):
    q = quadratic
    params = q.make_params()
    before = [p.detach().clone() for p in params]
    opt = SAM(params, torch.optim.SGD, rho=0.37, lr=0.0)
    closure = q.closure_for(params)
    closure()
    opt.first_step(zero_grad=True)
    assert not torch.equal(params[0].detach(), before[0])
    closure()
    opt.second_step()
    for p, b in zip(params, before):
        assert torch.equal(p.detach(), b)


@pytest.mark.parametrize("decomposition", ["global", "elementwise"])
@pytest.mark.parametrize("cls", [SAMDirection, SAMMagnitude], ids=["sam-direction", "sam-magnitude"])
def test_decomposed_step_matches_closed_form(quadratic, cls, decomposition):
    q = quadratic
    rho = 0.3
    params = q.make_params()
    opt = cls(params, torch.optim.SGD, rho=rho, decomposition=decomposition, lr=LR)
    opt.step(q.closure_for(params))
    w = q.w0
    g_sgd = q.grad(w)
    g_sam = q.grad(w + sam_perturbation(q, w, rho, False))
    dir_src, mag_src = (g_sam, g_sgd) if cls is SAMDirection else (g_sgd, g_sam)
    if decomposition == "global":
        d = dir_src / dir_src.norm() * mag_src.norm()
    else:
        d = torch.sign(dir_src) * mag_src.abs()
    torch.testing.assert_close(q.flat(params), w - LR * d, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(torch.cat([t.view(-1) for t in opt.sgd_grad]), g_sgd, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(torch.cat([t.view(-1) for t in opt.sam_grad]), g_sam, rtol=1e-10, atol=1e-12)
    # the update keeps exactly the magnitude it claims to keep
    if decomposition == "global":
        assert float(d.norm()) == pytest.approx(float(mag_src.norm()), rel=1e-12)


@pytest.mark.parametrize(
    "cls", [SAM, SAMDirection, SAMMagnitude], ids=["sam", "sam-direction", "sam-magnitude"]
)
def test_last_stats_match_formula(quadratic, cls):
    q = quadratic
    params = q.make_params()
    opt = cls(params, torch.optim.SGD, rho=0.8, lr=LR)
    assert opt.last_stats is None
    opt.step(q.closure_for(params))
    g_sgd = q.grad(q.w0)
    g_sam = q.grad(q.w0 + sam_perturbation(q, q.w0, 0.8, False))
    stats = opt.last_stats
    assert set(stats) == {"grad_norm_ratio", "cosine", "frac_larger"}
    assert stats["grad_norm_ratio"] == pytest.approx(float(g_sam.norm() / g_sgd.norm()), rel=1e-12)
    cos = float(g_sam @ g_sgd / (g_sam.norm() * g_sgd.norm()))
    assert stats["cosine"] == pytest.approx(cos, rel=1e-12)
    assert stats["frac_larger"] == pytest.approx(float((g_sam.abs() > g_sgd.abs()).double().mean()))
    assert stats["cosine"] < 1 - 1e-6  # the perturbation really changed the gradient


def test_scheduler_drives_base_optimizer(quadratic):
    params = quadratic.make_params()
    opt = SAM(params, torch.optim.SGD, rho=0.1, lr=1.0, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    opt.step(quadratic.closure_for(params))
    sched.step()
    assert opt.base_optimizer.param_groups[0]["lr"] == pytest.approx(0.5)
    assert opt.param_groups is opt.base_optimizer.param_groups


def test_state_dict_carries_base_momentum_and_relinks(quadratic):
    params = quadratic.make_params()
    opt = SAM(params, torch.optim.SGD, rho=0.1, lr=0.1, momentum=0.9)
    opt.step(quadratic.closure_for(params))
    sd = opt.state_dict()
    assert all("momentum_buffer" in s and "old_p" not in s for s in sd["state"].values())
    opt2 = SAM(params, torch.optim.SGD, rho=0.1, lr=0.1, momentum=0.9)
    opt2.load_state_dict(sd)
    assert opt2.base_optimizer.state is opt2.state
    assert opt2.base_optimizer.param_groups is opt2.param_groups
    torch.testing.assert_close(
        opt2.state[params[0]]["momentum_buffer"], opt.state[params[0]]["momentum_buffer"]
    )


def test_batchnorm_statistics_frozen_in_second_pass():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 1)).double()
    ref = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 1)).double()
    ref.load_state_dict(model.state_dict())
    x = torch.randn(16, 4, dtype=torch.float64)
    ref(x)  # one training-mode pass: the statistics SAM must end with
    opt = SAM(model.parameters(), torch.optim.SGD, rho=0.5, lr=0.1, model=model)

    def closure():
        opt.zero_grad()
        loss = model(x).pow(2).mean()
        loss.backward()
        return loss

    opt.step(closure)
    bn, bn_ref = model[1], ref[1]
    torch.testing.assert_close(bn.running_mean, bn_ref.running_mean)
    torch.testing.assert_close(bn.running_var, bn_ref.running_var)
    assert int(bn.num_batches_tracked) == 1
    assert bn.momentum == bn_ref.momentum


def test_disable_enable_running_stats_roundtrip():
    bn = nn.BatchNorm1d(2, momentum=0.3)
    model = nn.Sequential(bn)
    disable_running_stats(model)
    model(torch.randn(8, 2))
    assert torch.equal(bn.running_mean, torch.zeros(2)) and torch.equal(bn.running_var, torch.ones(2))
    enable_running_stats(model)
    assert bn.momentum == 0.3
    assert int(bn.num_batches_tracked) == 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rho": -0.1}, "rho=-0.1"),
        ({"decomposition": "sign"}, "decomposition='sign'.*'global', 'elementwise'"),
        ({"lr": -1.0}, "lr"),
    ],
    ids=["negative-rho", "bad-decomposition", "negative-lr"],
)
def test_invalid_hyperparameters(quadratic, kwargs, match):
    kw = {"lr": 0.1, **kwargs}
    with pytest.raises(ConfigError, match=match):
        SAMDirection(quadratic.make_params(), torch.optim.SGD, **kw)


def test_base_optimizer_instance_rejected(quadratic):
    params = quadratic.make_params()
    with pytest.raises(ConfigError, match="base_optimizer"):
        SAM(params, torch.optim.SGD(params, lr=0.1), lr=0.1)


def test_step_without_closure_is_a_clear_error(quadratic):
    opt = SAM(quadratic.make_params(), torch.optim.SGD, lr=0.1)
    with pytest.raises(ConfigError, match="closure"):
        opt.step()


@pytest.mark.parametrize("adaptive", [False, True], ids=["sam", "asam"])
def test_zero_gradient_gives_no_nan(adaptive):
    """At an exact stationary point (gradient exactly 0) the ascent ``rho * g / ||g||`` must be 0, not
    0/0: the weights stay exactly where they are. The statistics follow their definitions: the ratio
    and cosine divide by ``||g_SGD|| = 0`` (NaN by definition), no coordinate has ``|0| > |0|``."""
    centre = [torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64), torch.tensor([3.0], dtype=torch.float64)]
    params = [nn.Parameter(c.clone()) for c in centre]
    opt = SAM(params, torch.optim.SGD, rho=0.1, adaptive=adaptive, lr=0.1)

    def closure():
        opt.zero_grad()
        loss = sum(((p - c) ** 2).sum() for p, c in zip(params, centre))
        loss.backward()
        return loss

    opt.step(closure)
    for p, c in zip(params, centre):
        assert torch.equal(p.detach(), c)
    assert math.isnan(opt.last_stats["grad_norm_ratio"]) and math.isnan(opt.last_stats["cosine"])
    assert opt.last_stats["frac_larger"] == 0.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_sam_on_cuda_matches_cpu(quadratic):
    q = quadratic
    out = []
    for device in ("cpu", "cuda"):
        params = [nn.Parameter(p.detach().to(device)) for p in q.make_params()]
        A, b = q.A.to(device), q.b.to(device)
        opt = SAM(params, torch.optim.SGD, rho=0.2, adaptive=True, lr=0.1, momentum=0.9)

        def closure(params=params, A=A, b=b):
            for p in params:
                p.grad = None
            w = torch.cat([p.view(-1) for p in params])
            loss = 0.5 * w @ A @ w - b @ w
            loss.backward()
            return loss

        for _ in range(3):
            opt.step(closure)
        out.append(torch.cat([p.detach().cpu().view(-1) for p in params]))
    torch.testing.assert_close(out[0], out[1])
