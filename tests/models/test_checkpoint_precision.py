"""Checkpoints load at their own precision (issue 20, item 5): no rounding through float32."""

from __future__ import annotations

import pytest
import torch

from landscape.data.datasets import DataSpec
from landscape.models.builders import ModelSpec, build_model
from landscape.models.checkpoints import checkpoint_precision, load_model, save_checkpoint
from landscape.objective.loading import objective_from_checkpoint


def _save(tmp_path, dtype: torch.dtype):
    torch.manual_seed(0)
    model = build_model("mlp", hidden=(8,), activation="tanh").to(dtype)
    with torch.no_grad():
        for p in model.parameters():
            # digits beyond float32's 24 bits, which a float32 round trip would drop
            p.add_(torch.randn_like(p) * 1e-9)
    path = save_checkpoint(
        tmp_path / f"{dtype}.pt", model, model_spec=ModelSpec("mlp", {"hidden": [8], "activation": "tanh"}),
        data_spec=DataSpec("digits"),
    )  # fmt: skip
    return path, {k: v.clone() for k, v in model.state_dict().items()}


def test_float64_weights_load_bit_for_bit(tmp_path) -> None:
    path, saved = _save(tmp_path, torch.float64)
    net, _ = load_model(path)
    loaded = net.state_dict()
    assert all(loaded[k].dtype == torch.float64 and torch.equal(loaded[k], saved[k]) for k in saved)
    assert any(not torch.equal(saved[k].float().double(), saved[k]) for k in saved)  # float32 would round


def test_float32_checkpoint_stays_float32(tmp_path) -> None:
    path, saved = _save(tmp_path, torch.float32)
    net, _ = load_model(path)
    assert all(v.dtype == torch.float32 and torch.equal(v, saved[k]) for k, v in net.state_dict().items())


@pytest.mark.parametrize(
    "dtype,want", [(torch.float64, "float64"), (torch.float32, "float32")], ids=["float64", "float32"]
)
def test_objective_defaults_to_the_checkpoint_precision(tmp_path, dtype, want) -> None:
    path, saved = _save(tmp_path, dtype)
    obj, _, _ = objective_from_checkpoint(path, samples=16, device="cpu")
    assert obj.dtype == dtype and obj.metadata()["dtype"] == want
    assert torch.equal(obj.params[0].detach(), saved["net.1.weight"])


def test_checkpoint_precision_is_the_widest_floating_dtype() -> None:
    sd = {
        "w": torch.zeros(2, dtype=torch.float16),
        "v": torch.zeros(2),
        "n": torch.zeros(1, dtype=torch.long),
    }
    assert checkpoint_precision(sd) == torch.float32
    assert checkpoint_precision({**sd, "d": torch.zeros(1, dtype=torch.float64)}) == torch.float64
    assert checkpoint_precision({"n": torch.zeros(1, dtype=torch.long)}) is None
