"""Objectives with closed-form answers for the measure tests (float64, tiny)."""

from __future__ import annotations

import torch
from torch import nn

from landscape.objective.core import Objective

# small budgets for every measure on cnn_objective (its linear head is layer "4"; 16 examples, m = 8)
FAST_OPTIONS = dict(
    steps=3,
    mc_samples=4,
    random_max_samples=3,
    bisection_steps=3,
    hutchinson_probes=4,
    k=2,
    lanczos_tol=1e-3,
    layer="4",
    m=8,
    seed=7,
)


def quadratic_objective(A: torch.Tensor, w_star: torch.Tensor, w: torch.Tensor | None = None) -> Objective:
    """``L(w) = 1/2 (w - w*)^T A (w - w*)`` exactly, as a bias-free linear model with mean squared error.

    With ``X = sqrt(N/2) A^(1/2)`` (``N = d`` rows) and ``y = X w*``, the loss
    ``(1/N) ||X w - y||^2 = (w - w*)^T (X^T X / N) (w - w*)`` has Hessian ``A``.
    """
    d = A.shape[0]
    lam, U = torch.linalg.eigh(A.double())
    X = (d / 2) ** 0.5 * (U * lam.clamp(min=0).sqrt()) @ U.T
    y = X @ w_star.double().reshape(d, 1)
    model = nn.Linear(d, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_((w_star if w is None else w).double().reshape(1, d))
    return Objective(model, (X, y), loss_fn=nn.MSELoss(), dtype=torch.float64)


def mlp_objective(n: int = 24, batch_size: int | None = None, seed: int = 0) -> Objective:
    """A small tanh MLP classifier on random data (float64)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (n,), generator=g)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    return Objective(model, (x, y), batch_size=batch_size, dtype=torch.float64)


def cnn_objective(n: int = 16, seed: int = 0) -> Objective:
    """A tiny convolutional classifier with batch norm (eval mode) on random 8x8 images."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 8, 8, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (n,), generator=g)
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1),
        nn.BatchNorm2d(2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(2 * 64, 3),
    ).double()
    # non-trivial running statistics, so that a change to them would show
    with torch.no_grad():
        model[1].running_mean.uniform_(-0.5, 0.5, generator=g)
        model[1].running_var.uniform_(0.5, 2.0, generator=g)
    return Objective(model, (x, y), batch_size=6, dtype=torch.float64)


def spd(d: int, seed: int, *, diagonal: bool = False) -> torch.Tensor:
    """A symmetric positive definite matrix with distinct eigenvalues in [0.5, 3]."""
    g = torch.Generator().manual_seed(seed)
    lam = torch.linspace(0.5, 3.0, d, dtype=torch.float64)
    if diagonal:
        return torch.diag(lam[torch.randperm(d, generator=g)])
    Q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    return (Q * lam) @ Q.T
