"""Fixtures of the connectivity tests (models are in connect_helpers.py)."""

from __future__ import annotations

import pytest
import torch

from landscape.data.datasets import digits_tensors


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def digits_small() -> tuple[torch.Tensor, torch.Tensor]:
    x, y = digits_tensors("train")
    return x[:96].double(), y[:96]
