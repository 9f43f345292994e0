"""Shared fixtures: tiny models, data and checkpoints made on the fly (nothing is committed)."""

from __future__ import annotations

import os

import matplotlib
import pytest
import torch

from landscape.hessian.testing import dense_hessian, digits, make_cnn, make_mlp
from landscape.objective.core import Objective

matplotlib.use("Agg")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def cnn_checkpoint(tmp_path):
    """A checkpoint in our format of the registry's small CNN (with batch norm) on digits."""
    from landscape.data.datasets import DataSpec
    from landscape.models.builders import ModelSpec, build_model
    from landscape.models.checkpoints import save_checkpoint

    model = build_model("cnn", width=4)
    path = tmp_path / "cnn.pt"
    save_checkpoint(
        path, model, model_spec=ModelSpec("cnn", {"width": 4}), data_spec=DataSpec("digits"), step=3, epoch=1
    )
    return path


# tiny float64 objectives with their dense Hessians (the hessian and analysis tests share them)
@pytest.fixture(scope="module")
def mlp_problem() -> tuple[Objective, torch.Tensor]:
    obj = Objective(make_mlp(), digits(100), batch_size=32, dtype=torch.float64)
    return obj, dense_hessian(obj)


@pytest.fixture(scope="module")
def cnn_problem() -> tuple[Objective, torch.Tensor]:
    obj = Objective(make_cnn(), digits(60), batch_size=25, dtype=torch.float64)
    return obj, dense_hessian(obj)
