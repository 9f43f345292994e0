"""Momentum-SAM and AdamW-MSAM-ScheduleFree against their formulas on a quadratic."""

from __future__ import annotations

import math

import pytest
import torch

from landscape.errors import ConfigError
from landscape.optim import MSAM, AdamWMSAMScheduleFree


def test_msam_perturbation_and_update_closed_form(quadratic):
    q = quadratic
    lr, mu, rho, wd = 0.1, 0.9, 0.2, 0.01
    params = q.make_params()
    opt = MSAM(params, lr=lr, momentum=mu, rho=rho, weight_decay=wd)
    closure = q.closure_for(params)
    w, v = q.w0.clone(), torch.zeros(5, dtype=torch.float64)
    for t in range(3):
        w_tilde = w - rho * v / v.norm() if t > 0 else w.clone()
        torch.testing.assert_close(q.flat(params), w_tilde, rtol=1e-12, atol=1e-14)
        loss = opt.step(closure)
        assert float(loss) == pytest.approx(float(q.value(w_tilde)), rel=1e-12)
        v = mu * v + q.grad(w_tilde) + wd * w if t > 0 else q.grad(w_tilde) + wd * w
        w = w - lr * v
    assert opt.at_ascent
    torch.testing.assert_close(q.flat(params), w - rho * v / v.norm(), rtol=1e-12, atol=1e-14)
    ascent = q.flat(params).clone()
    opt.eval()
    torch.testing.assert_close(q.flat(params), w, rtol=1e-12, atol=1e-14)
    opt.train()
    assert torch.equal(q.flat(params), ascent)


def test_msam_move_from_ascent_is_exact(quadratic):
    params = quadratic.make_params()
    opt = MSAM(params, lr=0.1, rho=0.7)
    opt.step(quadratic.closure_for(params))
    opt.move_from_ascent()
    base = q_flat = torch.cat([p.detach().view(-1) for p in params]).clone()
    opt.move_to_ascent()
    assert not torch.equal(torch.cat([p.detach().view(-1) for p in params]), q_flat)
    opt.move_from_ascent()
    assert torch.equal(torch.cat([p.detach().view(-1) for p in params]), base)


def test_step_in_eval_mode_is_an_error(quadratic):
    params = quadratic.make_params()
    for opt in (MSAM(params, lr=0.1), AdamWMSAMScheduleFree(params, lr=0.1)):
        opt.eval()
        with pytest.raises(ConfigError, match="eval mode"):
            opt.step(quadratic.closure_for(params))


def reference_sf(q, *, lr, betas, eps, wd, rho, warmup, r, p, beta_i, steps, sign=1.0):
    """Straight transcription of the formula (float64, one flat parameter)."""
    b1, b2 = betas
    z = q.w0.clone()
    x = z.clone()
    y = z.clone()
    m = torch.zeros_like(z)
    v = torch.zeros_like(z)
    a = torch.zeros_like(z)
    lr_max, wsum, zs, ws = 0.0, 0.0, [], []
    for t in range(1, steps + 1):
        point = y + sign * rho * a / a.norm() if a.norm() > 0 else y
        g = q.grad(point)
        alpha = lr * min(1.0, t / warmup if warmup else 1.0) * math.sqrt(1 - b2**t) / (1 - b1**t)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        z = z - alpha * m / (v.sqrt() + eps) - alpha * wd * z
        a = b1 * a + g
        lr_max = max(lr_max, alpha)
        w = t**r * lr_max**p
        wsum += w
        c = w / wsum
        x = (1 - c) * x + c * z
        y = (1 - beta_i) * z + beta_i * x
        zs.append(z.clone())
        ws.append(w)
    return y, x, zs, ws, c


@pytest.mark.parametrize(
    ("warmup", "r", "power", "beta_i"),
    [(0, 0.0, 2.0, 0.0), (3, 1.0, 2.0, 0.0), (2, 0.5, 1.0, 0.9)],
    ids=["no-warmup", "warmup-r1", "interp0.9"],
)
def test_schedule_free_matches_formula_and_weighted_average(quadratic, warmup, r, power, beta_i):
    q = quadratic
    kw = dict(lr=0.05, betas=(0.9, 0.99), eps=1e-8, rho=0.1)
    params = q.make_params()
    opt = AdamWMSAMScheduleFree(
        params, **kw, weight_decay=0.01, warmup_steps=warmup, r=r, weight_lr_power=power, interpolation=beta_i
    )
    closure = q.closure_for(params)
    steps = 6
    zs = []
    for _ in range(steps):
        opt.step(closure)
        zs.append(torch.cat([opt.state[p]["z"].view(-1) for p in params]).clone())
    y, x, zs_ref, ws, c = reference_sf(
        q, **kw, wd=0.01, warmup=warmup, r=r, p=power, beta_i=beta_i, steps=steps
    )
    torch.testing.assert_close(q.flat(params), y, rtol=1e-10, atol=1e-12)
    for z, zr in zip(zs, zs_ref):
        torch.testing.assert_close(z, zr, rtol=1e-10, atol=1e-12)
    assert opt.param_groups[0]["last_c"] == pytest.approx(c, rel=1e-12)
    # closed form of the schedule-free average: x_T = sum_t w_t z_t / sum_t w_t
    wt = torch.tensor(ws, dtype=torch.float64)
    x_closed = (wt.unsqueeze(1) * torch.stack(zs_ref)).sum(0) / wt.sum()
    opt.eval()
    torch.testing.assert_close(q.flat(params), x_closed, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(q.flat(params), x, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("beta_i", [0.0, 0.9], ids=["y=z", "interp0.9"])
def test_schedule_free_eval_train_roundtrip_is_bitwise(quadratic, beta_i):
    q = quadratic
    params = q.make_params()
    opt = AdamWMSAMScheduleFree(params, lr=0.05, rho=0.2, interpolation=beta_i)
    closure = q.closure_for(params)
    for _ in range(4):
        opt.step(closure)
    y = q.flat(params).clone()
    opt.eval()
    assert not torch.equal(q.flat(params), y)
    opt.eval()  # idempotent
    opt.train()
    assert torch.equal(q.flat(params), y)
    opt.move_to_ascent()
    assert opt.at_ascent and not torch.equal(q.flat(params), y)
    opt.move_from_ascent()
    assert torch.equal(q.flat(params), y)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"betas": (0.9, 1.0)}, r"betas\[1\]=1.0"),
        ({"warmup_steps": -1}, "warmup_steps=-1"),
        ({"interpolation": 1.0}, "interpolation=1.0"),
        ({"lr": 0.0}, "lr=0.0"),
    ],
    ids=["beta2", "warmup", "interpolation", "lr"],
)
def test_schedule_free_validation(quadratic, kwargs, match):
    kw = {"lr": 0.1, **kwargs}
    with pytest.raises(ConfigError, match=match):
        AdamWMSAMScheduleFree(quadratic.make_params(), **kw)


@pytest.mark.parametrize("negative", [False, True], ids=["seed-plus", "negative-momentum"])
def test_schedule_free_ascent_sign(quadratic, negative):
    """The seed's +a/||a|| by default; -a/||a|| (as Momentum-SAM) with negative_momentum=True."""
    q = quadratic
    kw = dict(lr=0.05, betas=(0.9, 0.99), eps=1e-8, rho=0.3)
    params = q.make_params()
    opt = AdamWMSAMScheduleFree(params, **kw, negative_momentum=negative)
    closure = q.closure_for(params)
    for _ in range(5):
        opt.step(closure)
    y_ref, *_ = reference_sf(
        q, **kw, wd=0.0, warmup=0, r=0.0, p=2.0, beta_i=0.0, steps=5, sign=-1.0 if negative else 1.0
    )
    torch.testing.assert_close(q.flat(params), y_ref, rtol=1e-10, atol=1e-12)
    y = q.flat(params).clone()
    a = torch.cat([opt.state[p]["ascent_momentum"].view(-1) for p in params])
    opt.move_to_ascent()
    step = q.flat(params) - y
    torch.testing.assert_close(step, (-1.0 if negative else 1.0) * 0.3 * a / a.norm(), rtol=1e-12, atol=1e-14)
    state = opt.state_dict()
    opt.move_from_ascent()
    fresh = AdamWMSAMScheduleFree(q.make_params(), **kw)
    fresh.load_state_dict(state)
    assert fresh.param_groups[0]["ascent_sign"] == (-1.0 if negative else 1.0)
