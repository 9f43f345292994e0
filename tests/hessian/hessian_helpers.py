"""Helpers of the Hessian tests: tiny float64 models and data with their dense Hessians.

A module of its own (not conftest.py) so that spawned distributed workers import the same file.
"""

from __future__ import annotations

import torch

from landscape.io.data import digits_tensors
from landscape.io.models import build_model
from landscape.objective import Objective


def dense_hessian(obj: Objective) -> torch.Tensor:
    """``torch.func.hessian`` of the weighted full-data loss over the flat parameters."""
    names = obj.param_names
    shapes = [p.shape for p in obj.params]
    sizes = [p.numel() for p in obj.params]
    full = obj.param_dict()
    flat0 = torch.cat([p.detach().reshape(-1) for p in obj.params])
    batches = list(obj.batches())

    def f(flat: torch.Tensor) -> torch.Tensor:
        d = dict(full)
        d.update({n: c.view(s) for n, c, s in zip(names, torch.split(flat, sizes), shapes)})
        return sum(w * obj.functional_batch_loss(d, x, y) for x, y, w in batches)

    H = torch.func.hessian(f)(flat0)
    return (H + H.T) / 2


def digits(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = digits_tensors("train")
    return x[:n].double(), y[:n]


def make_mlp(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model("mlp", hidden=(8,), activation="tanh").double()


def make_cnn(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_model("cnn", width=4).double()
    for m in model.modules():  # non-trivial running statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return model


def spectrum_matrix(eigenvalues: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """``Q diag(eigenvalues) Q^T`` with a seeded random orthogonal ``Q``."""
    n = eigenvalues.numel()
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    A = Q @ torch.diag(eigenvalues.double()) @ Q.T
    return (A + A.T) / 2
