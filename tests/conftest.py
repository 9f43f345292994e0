"""Shared fixtures: tiny models, data and checkpoints made on the fly (nothing is committed)."""

from __future__ import annotations

import os

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def cnn_checkpoint(tmp_path):
    """A checkpoint in our format of the registry's small CNN (with batch norm) on digits."""
    from landscape.io.checkpoints import save_checkpoint
    from landscape.io.data import DataSpec
    from landscape.io.models import ModelSpec, build_model

    model = build_model("cnn", width=4)
    path = tmp_path / "cnn.pt"
    save_checkpoint(
        path, model, model_spec=ModelSpec("cnn", {"width": 4}), data_spec=DataSpec("digits"), step=3, epoch=1
    )
    return path
