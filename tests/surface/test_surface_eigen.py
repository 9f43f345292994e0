"""Eigen directions: the top Hessian eigenvectors of a quadratic equal the dense ones."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from landscape import Objective
from landscape.surface import compute_surface, eigen_directions


class Quadratic(nn.Module):
    def __init__(self, A: torch.Tensor) -> None:
        super().__init__()
        self.W = nn.Parameter(torch.randn(2, 3, dtype=torch.float64))
        self.register_buffer("A", A)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.W.reshape(-1)
        return (0.5 * w @ self.A @ w).expand(x.shape[0], 1)


def test_eigen_directions_match_dense_eigenvectors():
    torch.manual_seed(0)
    Q, _ = torch.linalg.qr(torch.randn(6, 6, dtype=torch.float64))
    lam = torch.tensor([5.0, 3.0, 1.0, 0.5, -0.2, -1.0], dtype=torch.float64)
    A = Q @ torch.diag(lam) @ Q.T
    model = Quadratic(A)
    obj = Objective(
        model, (torch.zeros(4, 1, dtype=torch.float64), torch.zeros(4)), loss_fn=lambda o, _y: o.mean()
    )
    dirs, evals = eigen_directions(obj, 2, seed=0, tol=1e-10)
    np.testing.assert_allclose(evals, [5.0, 3.0], rtol=1e-8)
    for k, d in enumerate(dirs):
        v = d["W"].reshape(-1)
        assert abs(abs(float(v @ Q[:, k])) - 1.0) < 1e-8
    # along the top eigenvector, the surface is the closed-form parabola q(w0) + a g.v + 0.5 lam a^2
    w0 = model.W.detach().reshape(-1).clone()
    xs = np.linspace(-1, 1, 5)
    s = compute_surface(obj, dirs[:1], xs, quiet=True)
    v = dirs[0]["W"].reshape(-1)
    expected = [float(0.5 * (w0 + a * v) @ A @ (w0 + a * v)) for a in xs]
    np.testing.assert_allclose(s.loss, expected, rtol=1e-12)
