"""Fixtures of the Hessian tests: tiny float64 objectives with their dense Hessians."""

from __future__ import annotations

import pytest
import torch

from landscape.objective import Objective
from landscape.testing import dense_hessian, digits, make_cnn, make_mlp

torch.set_num_threads(1)  # tiny problems: threads only contend with the other test workers


@pytest.fixture(scope="module")
def mlp_problem() -> tuple[Objective, torch.Tensor]:
    obj = Objective(make_mlp(), digits(100), batch_size=32, dtype=torch.float64)
    return obj, dense_hessian(obj)


@pytest.fixture(scope="module")
def cnn_problem() -> tuple[Objective, torch.Tensor]:
    obj = Objective(make_cnn(), digits(60), batch_size=25, dtype=torch.float64)
    return obj, dense_hessian(obj)
