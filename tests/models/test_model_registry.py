"""The model registry: every entry builds at the data's size, and a new model is one class plus one entry
(it then trains through ``landscape train`` and the help lists it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from torch import nn
from torch.utils.data import TensorDataset

from landscape.cli.main import cli
from landscape.errors import ModelError
from landscape.models.builders import ModelSpec, build_model, default_model_kwargs
from landscape.models.registry import MODELS, ModelEntry, flat_input, model_help, register_model
from landscape.training import TrainConfig, resolve_config

SMALL = {"wrn": {"depth": 10, "width": 1}}  # WRN-28-10 has 36M parameters


# the classifiers of images and vectors; the language model (classes are tokens) in tests/models/test_gpt_tiny.py
CLASSIFIERS = [name for name, entry in MODELS.items() if entry.classes_kwarg == "num_classes"]


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_each_entry_builds_at_the_size_of_the_data(name):
    shape = (40,) if name.startswith("mnist1d") else (1, 8, 8)
    spec = default_model_kwargs(ModelSpec(name, SMALL.get(name, {})), shape, 7)
    model = build_model(spec).eval()
    assert model(torch.zeros(2, *shape)).shape == (2, 7)
    assert f"{name}: {MODELS[name].help}" in model_help()


def test_training_sizes_the_registry_models_but_keeps_mnist1d_kwargs_as_given():
    data = TensorDataset(torch.zeros(6, 1, 8, 8), torch.tensor([0, 1, 2, 0, 1, 2]))
    sized = resolve_config(TrainConfig(model=ModelSpec("cnn", {"width": 4})), data).model
    assert sized.kwargs == {"width": 4, "in_channels": 1, "num_classes": 3}
    as_given = resolve_config(TrainConfig(model=ModelSpec("mnist1d-mlp", {})), data).model
    assert as_given.kwargs == {}


class ToyLinear(nn.Module):
    """A toy model as a user would add one: one linear layer on flattened inputs."""

    def __init__(self, in_features: int = 4, num_classes: int = 2) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(torch.flatten(x, 1))


@pytest.fixture
def toy_linear(monkeypatch: pytest.MonkeyPatch) -> ModelEntry:
    entry = ModelEntry("toy-linear", ToyLinear, "one linear layer", flat_input)
    monkeypatch.setitem(MODELS, entry.name, entry)
    return entry


def test_a_registered_model_trains_through_the_train_command(toy_linear, tmp_path: Path):
    assert isinstance(build_model("toy-linear", in_features=3), ToyLinear)
    assert "toy-linear: one linear layer" in model_help()
    args = ["train", "--model", "toy-linear", "--samples", "64", "--batch-size", "32", "--epochs", "1"]
    res = CliRunner().invoke(cli, [*args, "-o", str(tmp_path / "run"), "-q"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["model"] == {"name": "toy-linear", "kwargs": {"in_features": 64, "num_classes": 10}}


@pytest.mark.parametrize("name", ["mlp", "pkg.mod:make"], ids=["taken", "factory-form"])
def test_register_model_refuses_a_name_it_cannot_take(name):
    with pytest.raises(ModelError, match=f"model name {name!r} is taken or holds ':'"):
        register_model(ModelEntry(name, ToyLinear, "toy"))
    assert MODELS["mlp"].builder is not ToyLinear


def test_register_model_adds_the_entry():
    register_model(ModelEntry("toy-linear-2", ToyLinear, "toy"))
    try:
        assert isinstance(build_model("toy-linear-2"), ToyLinear)
    finally:
        del MODELS["toy-linear-2"]
