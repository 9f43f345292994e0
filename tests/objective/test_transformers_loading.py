"""An objective from a checkpoint of a Hugging Face GPT-2 with dict items (issue 20, items 5 and 6)."""

from __future__ import annotations

import sys
import textwrap

import pytest
import torch

from landscape.data.datasets import DataSpec
from landscape.models.builders import ModelSpec
from landscape.models.checkpoints import save_checkpoint
from landscape.objective.loading import objective_from_checkpoint

pytest.importorskip("transformers")

from transformer_cases import dense_reference, padded_tokens  # noqa: E402

FACTORIES = """
import torch
from torch.utils.data import Dataset
from transformer_cases import gpt2, padded_tokens


def model():
    return gpt2(seed=1).float()  # built in float32, as a user's factory would


class Tokens(Dataset):
    def __init__(self):
        self.data = padded_tokens()

    def __len__(self):
        return len(self.data["labels"])

    def __getitem__(self, i):
        return {k: v[i] for k, v in self.data.items()}


def tokens(split="train"):
    return Tokens()
"""


@pytest.fixture
def factories(tmp_path, monkeypatch):
    (tmp_path / "tf_factories_case.py").write_text(textwrap.dedent(FACTORIES))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "tf_factories_case"
    sys.modules.pop("tf_factories_case", None)


def test_checkpoint_of_a_float64_gpt2_with_dict_items(tmp_path, factories) -> None:
    from transformer_cases import gpt2

    trained = gpt2(seed=0)  # float64 weights, not float32-representable
    path = save_checkpoint(
        tmp_path / "gpt2.pt", trained, model_spec=ModelSpec(f"{factories}:model"),
        data_spec=DataSpec(f"{factories}:tokens"),
    )  # fmt: skip
    obj, _, _ = objective_from_checkpoint(path, batch_size=3, device="cpu")
    assert obj.dtype == torch.float64 and obj.metadata()["dtype"] == "float64"
    assert obj.metadata()["causal"] is True and obj.num_terms == 20
    saved = trained.state_dict()
    assert all(torch.equal(v, saved[k]) for k, v in obj.model.state_dict().items())
    loss, grad, _ = dense_reference(trained, padded_tokens(), causal=True)
    assert abs(obj.loss() - loss) < 1e-12
    torch.testing.assert_close(
        torch.cat([g.reshape(-1) for g in obj.gradient()[1]]), grad, rtol=1e-10, atol=1e-13
    )
