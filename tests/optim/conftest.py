"""Fixtures for the optimizer tests: float64 quadratics with closed forms, and a small digits problem."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from torch import Tensor, nn


@dataclass
class Quadratic:
    """f(w) = 1/2 w^T A w - b^T w over a parameter split into two tensors (to exercise global norms)."""

    A: Tensor
    b: Tensor
    w0: Tensor
    split: int = 3

    def grad(self, w: Tensor) -> Tensor:
        return self.A @ w - self.b

    def value(self, w: Tensor) -> Tensor:
        return 0.5 * w @ self.A @ w - self.b @ w

    def make_params(self) -> list[nn.Parameter]:
        return [nn.Parameter(self.w0[: self.split].clone()), nn.Parameter(self.w0[self.split :].clone())]

    def closure_for(self, params: list[nn.Parameter]) -> Callable[..., Tensor]:
        def closure(*_: object) -> Tensor:
            for p in params:
                p.grad = None
            loss = self.value(torch.cat([p.view(-1) for p in params]))
            loss.backward()
            return loss

        return closure

    @staticmethod
    def flat(params: list[nn.Parameter]) -> Tensor:
        return torch.cat([p.detach().view(-1) for p in params])


@pytest.fixture
def quadratic() -> Quadratic:
    g = torch.Generator().manual_seed(1234)
    n = 5
    Q = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))[0]
    eig = torch.tensor([0.5, 1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    A = Q @ torch.diag(eig) @ Q.T
    A = 0.5 * (A + A.T)
    b = torch.randn(n, generator=g, dtype=torch.float64)
    w0 = torch.randn(n, generator=g, dtype=torch.float64)
    return Quadratic(A=A, b=b, w0=w0)


@dataclass
class Digits:
    x: Tensor
    y: Tensor

    def batches(self, batch_size: int) -> list[tuple[Tensor, Tensor]]:
        return [
            (self.x[i : i + batch_size], self.y[i : i + batch_size])
            for i in range(0, len(self.y), batch_size)
        ]


@pytest.fixture(scope="session")
def digits() -> Digits:
    from landscape.data.datasets import digits_tensors

    x, y = digits_tensors("train")
    return Digits(x=x[:512].clone(), y=y[:512].clone())


def make_mlp(seed: int = 0, dtype: torch.dtype = torch.float32) -> nn.Module:
    from landscape.models.builders import build_model

    torch.manual_seed(seed)
    return build_model("mlp").to(dtype)


@pytest.fixture
def mlp_factory() -> Callable[..., nn.Module]:
    return make_mlp
