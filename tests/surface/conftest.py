"""Tiny seeded objectives for the surface tests (float64, 64 digits)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from landscape import Objective, build_model, digits_tensors


def _digits(n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = digits_tensors("train")
    return x[:n], y[:n]


@pytest.fixture
def make_objective() -> Callable[..., Objective]:
    """``make_objective(name, seed=0, **kwargs)``: a float64 MLP or CNN on 64 digits."""

    def make(name: str = "mlp", seed: int = 0, batch_size: int | None = 16, **kwargs: object) -> Objective:
        torch.manual_seed(seed)
        model_kwargs = {"mlp": {"hidden": [8]}, "cnn": {"width": 4}}[name]
        model = build_model(name, **model_kwargs)
        if name == "cnn":  # non-trivial running statistics
            with torch.no_grad():
                for m in model.modules():
                    if isinstance(m, torch.nn.BatchNorm2d):
                        m.running_mean.uniform_(-0.5, 0.5)
                        m.running_var.uniform_(0.5, 2.0)
        return Objective(model, _digits(), batch_size=batch_size, dtype=torch.float64, **kwargs)

    return make


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: tiny models, and 2 shared cores where threads would only contend."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
