"""Preconditioned sharpness: P against the optimizers' own steps, lambda_1(P^-1 H) against a dense matrix."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from torch import nn

from landscape.errors import ConfigError
from landscape.hessian.precond import adam_preconditioner, adaptive_threshold, preconditioned_sharpness
from landscape.objective.core import Objective
from landscape.objective.losses import resolve_loss
from landscape.optim import AdamWMSAMScheduleFree

torch.set_num_threads(1)

OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adam": lambda ps: torch.optim.Adam(ps, lr=0.01),
    "adam-amsgrad": lambda ps: torch.optim.Adam(ps, lr=0.01, betas=(0.8, 0.99), amsgrad=True),
    "adamw": lambda ps: torch.optim.AdamW(ps, lr=0.02, eps=1e-3, weight_decay=0.0),
    "adamw-msam-sf": lambda ps: AdamWMSAMScheduleFree(ps, lr=0.01, rho=0.0, warmup_steps=10),
}


def _problem() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    x = torch.randn(30, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (30,), generator=g)
    return model, x, y


def _train(name: str, steps: int) -> tuple[nn.Module, torch.Tensor, torch.Tensor, torch.optim.Optimizer]:
    model, x, y = _problem()
    opt = OPTIMIZERS[name](model.parameters())
    loss_fn = resolve_loss("mse")
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
    return model, x, y, opt


def _dense_hessian(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    sizes = [p.numel() for p in model.parameters()]
    loss_fn = resolve_loss("mse")

    def loss(w: torch.Tensor) -> torch.Tensor:
        parts = [c.view(s) for c, s in zip(torch.split(w, sizes), shapes)]
        return loss_fn(torch.func.functional_call(model, dict(zip(names, parts)), (x,)), y)

    w0 = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    return torch.autograd.functional.hessian(loss, w0)


@pytest.mark.parametrize("name", list(OPTIMIZERS), ids=list(OPTIMIZERS))
def test_preconditioner_reproduces_the_optimizer_step(name: str) -> None:
    # The optimizer's step is w_{t} - w_{t-1} = -lr_t P_t^-1 m_t with m_t its (not bias-corrected) EMA:
    # the P we read from the state must reproduce it exactly.
    model, x, y, opt = _train(name, 4)
    before = [p.detach().clone() for p in model.parameters()]
    opt.zero_grad()
    resolve_loss("mse")(model(x), y).backward()
    opt.step()
    params = list(model.parameters())
    pre = adam_preconditioner(opt, params)
    assert pre.step == 5
    group = opt.param_groups[0]
    expected_lr = group["lr"] * (0.5 if name == "adamw-msam-sf" else 1.0)  # warmup 5/10
    assert pre.lr == pytest.approx(expected_lr, rel=1e-15)
    for p, b, d in zip(params, before, pre.diagonal):
        predicted = b - pre.lr * opt.state[p]["exp_avg"] / d
        assert torch.allclose(p.detach(), predicted, rtol=0, atol=1e-14)


@pytest.mark.parametrize("name", list(OPTIMIZERS), ids=list(OPTIMIZERS))
def test_preconditioned_sharpness_matches_dense(name: str) -> None:
    model, x, y, opt = _train(name, 6)
    obj = Objective(model, (x, y), loss_fn=resolve_loss("mse"), batch_size=13)
    res = preconditioned_sharpness(obj, opt, k=2, tol=1e-10, seed=1)
    H = _dense_hessian(model, x, y)
    d = torch.cat([t.reshape(-1) for t in adam_preconditioner(opt, list(model.parameters())).diagonal])
    s = d.rsqrt()
    dense = torch.linalg.eigvalsh(s[:, None] * H * s[None, :])
    assert res.eigenvalues[0] == pytest.approx(float(dense[-1]), rel=1e-9)
    assert res.eigenvalues[1] == pytest.approx(float(dense[-2]), rel=1e-9)
    # the same number as the largest eigenvalue of the non-symmetric P^-1 H
    nonsym = torch.linalg.eigvals(H / d[:, None]).real.max()
    assert res.lambda_max == pytest.approx(float(nonsym), rel=1e-8)
    beta1 = opt.param_groups[0]["betas"][0]
    assert res.threshold == pytest.approx((2 + 2 * beta1) / ((1 - beta1) * res.lr), rel=1e-15)
    assert all(res.converged)


def test_without_momentum_bias_correction_p_is_sqrt_vhat_plus_eps() -> None:
    model, _, _, opt = _train("adam", 2)
    params = list(model.parameters())
    with_corr = adam_preconditioner(opt, params).diagonal
    without = adam_preconditioner(opt, params, momentum_bias_correction=False).diagonal
    for a, b in zip(with_corr, without):
        assert torch.allclose(a, b * (1 - 0.9**2), rtol=1e-15, atol=0)


@pytest.mark.parametrize("ratio,stable", [(0.97, True), (1.03, False)], ids=["below", "above"])
@pytest.mark.parametrize("beta1", [0.0, 0.9], ids=["no-momentum", "beta1=0.9"])
def test_threshold_is_where_frozen_preconditioned_momentum_diverges(
    ratio: float, beta1: float, stable: bool
) -> None:
    # m <- beta1 m + (1 - beta1) H w, w <- w - lr P^-1 m on a quadratic with lambda_1(P^-1 H) = ratio * thr
    lr = 0.1
    thr = adaptive_threshold(lr, beta1)
    assert thr == pytest.approx(38 / lr if beta1 == 0.9 else 2 / lr)
    h = torch.tensor([ratio * thr * 3.0, 1.0], dtype=torch.float64)
    p = torch.tensor([3.0, 2.0], dtype=torch.float64)  # P^-1 H = diag(ratio * thr, 0.5)
    w = torch.ones(2, dtype=torch.float64)
    m = torch.zeros(2, dtype=torch.float64)
    for _ in range(3000):
        m = beta1 * m + (1 - beta1) * h * w
        w = w - lr * m / p
    assert (float(w.abs().max()) < 1e-3) == stable


def test_errors_name_the_problem() -> None:
    model, x, y = _problem()
    obj = Objective(model, (x, y), loss_fn=resolve_loss("mse"))
    with pytest.raises(ConfigError, match=r"optimizer of type SGD has no Adam preconditioner"):
        preconditioned_sharpness(obj, torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(ConfigError, match=r"no second-moment estimate for parameter '0.weight' yet"):
        preconditioned_sharpness(obj, torch.optim.Adam(model.parameters(), lr=0.1))
    with pytest.raises(ConfigError, match=r"lr=0 must be > 0"):
        adaptive_threshold(0, 0.9)
    assert math.isclose(adaptive_threshold(0.001, 0.9), 38_000.0)
