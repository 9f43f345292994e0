"""Dict batches and model outputs through the objective and the products (issue 20, item 6)."""

from __future__ import annotations

import types

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from landscape.errors import DataError
from landscape.hessian import HessianOperator
from landscape.objective.core import Objective

pytest.importorskip("transformers")

from transformer_cases import dense_reference, gpt2, padded_tokens  # noqa: E402


class _DictItems(Dataset):
    """Map-style dataset whose items are dicts, as a tokenized Hugging Face dataset gives them."""

    def __init__(self, data: dict[str, torch.Tensor]) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data["labels"])

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[i] for k, v in self.data.items()}


def _forms(data: dict[str, torch.Tensor]) -> dict[str, object]:
    batches = [{k: v[i : i + 3] for k, v in data.items()} for i in range(0, 7, 3)]
    return {
        "dict-of-tensors": data,
        "list-of-dict-batches": batches,
        "dataset-of-dict-items": _DictItems(data),
        "loader-of-dict-items": DataLoader(_DictItems(data), batch_size=3),
    }


@pytest.fixture(scope="module")
def reference():
    model, data = gpt2(), padded_tokens()
    return model, data, dense_reference(model, data, causal=True)


@pytest.mark.parametrize("form", list(_forms(padded_tokens())))
def test_every_form_of_dict_data_gives_the_token_mean_and_its_hessian(reference, form: str) -> None:
    model, data, (loss, grad, H) = reference
    obj = Objective(model, _forms(data)[form], batch_size=3, dtype=torch.float64)
    assert obj.num_samples == 7 and obj.num_terms == 20
    assert abs(obj.loss() - loss) < 1e-12
    torch.testing.assert_close(
        torch.cat([g.reshape(-1) for g in obj.gradient()[1]]), grad, rtol=1e-10, atol=1e-13
    )
    op = HessianOperator(obj)  # a loader is checked for determinism: two gradient passes
    v = torch.randn(op.shape[0], generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    torch.testing.assert_close(op @ v, H @ v, rtol=1e-9, atol=1e-12)


class _Recorder(nn.Module):
    """Takes ``pixel_values`` and an integer ``attention_mask`` and records what dtypes arrive."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(3, 2)
        self.seen: list[tuple[torch.dtype, torch.dtype]] = []

    def forward(self, pixel_values: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        self.seen.append((pixel_values.dtype, attention_mask.dtype))
        return {"logits": self.proj(pixel_values * attention_mask[:, :1])}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_floating_inputs_take_the_objective_dtype_and_integer_ones_stay(dtype) -> None:
    model = _Recorder()
    data = {
        "pixel_values": torch.randn(5, 3, dtype=torch.float16).double(),
        "attention_mask": torch.ones(5, 2, dtype=torch.long),
        "labels": torch.tensor([0, 1, 1, 0, 1]),
    }
    for form in (data, DataLoader(_DictItems(data), batch_size=2)):
        model.seen.clear()
        Objective(model, form, dtype=dtype).evaluate()
        assert model.seen and set(model.seen) == {(dtype, torch.long)}


class _Head(nn.Module):
    """A linear classifier returning its logits as a tensor, a dict, a ModelOutput or an object."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(4, 3)
        self.kind = kind

    def forward(self, x: torch.Tensor) -> object:
        logits = torch.tanh(self.lin(x)) * 2
        if self.kind == "dict":
            return {"logits": logits, "hidden": x}
        if self.kind == "model-output":
            from transformers.modeling_outputs import SequenceClassifierOutput

            return SequenceClassifierOutput(logits=logits)
        if self.kind == "attribute":
            return types.SimpleNamespace(logits=logits, extra=None)
        return logits


@pytest.mark.parametrize("kind", ["dict", "model-output", "attribute"])
def test_logits_are_taken_from_dict_modeloutput_and_attribute_outputs(kind: str) -> None:
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(9, 4, generator=g, dtype=torch.float64), torch.randint(0, 3, (9,), generator=g)
    plain = Objective(_Head("tensor"), (x, y), batch_size=4, dtype=torch.float64)
    other = Objective(_Head(kind), (x, y), batch_size=4, dtype=torch.float64)
    assert other.evaluate() == plain.evaluate() and other.evaluate().accuracy == other.evaluate().accuracy
    v = torch.randn(plain.num_params, generator=g, dtype=torch.float64)
    for mode in ("rev-rev", "fwd-rev"):
        torch.testing.assert_close(HessianOperator(other, mode=mode) @ v, HessianOperator(plain) @ v)


def test_bert_sequence_classifier_with_token_type_ids() -> None:
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=9, hidden_size=4, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8,
        max_position_embeddings=8, num_labels=3, type_vocab_size=2,
    )  # fmt: skip
    model = BertForSequenceClassification(config).double().eval()
    data = padded_tokens()
    data = {
        "input_ids": data["input_ids"],
        "attention_mask": data["attention_mask"],
        "token_type_ids": (torch.arange(6)[None, :] >= 3).long().expand(7, 6),
        "labels": torch.tensor([0, 2, 1, 1, 0, 2, 1]),
    }
    inputs = {k: v for k, v in data.items() if k != "labels"}
    with torch.no_grad():
        logits = model(**inputs).logits
    obj = Objective(model, data, batch_size=3, dtype=torch.float64)
    assert not obj.token_level and obj.num_terms == 7
    ev = obj.evaluate()
    assert ev.loss == pytest.approx(float(F.cross_entropy(logits, data["labels"])), abs=1e-12)
    assert ev.accuracy == pytest.approx(
        float((logits.argmax(1) == data["labels"]).double().mean()), abs=1e-15
    )
    H = _autograd_hessian(obj)
    v = torch.randn(obj.num_params, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    torch.testing.assert_close(HessianOperator(obj) @ v, H @ v, rtol=1e-9, atol=1e-12)


def _autograd_hessian(obj: Objective) -> torch.Tensor:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    names, params = obj.param_names, [p.detach() for p in obj.params]
    shapes, sizes = [p.shape for p in params], [p.numel() for p in params]
    batches = list(obj.batches())

    def f(flat: torch.Tensor) -> torch.Tensor:
        d = {n: c.view(s) for n, c, s in zip(names, torch.split(flat, sizes), shapes)}
        return sum(w * obj.functional_batch_loss(d, x, y) for x, y, w in batches)

    with sdpa_kernel(SDPBackend.MATH):
        return torch.autograd.functional.hessian(f, torch.cat([p.reshape(-1) for p in params]))


class _BatchNormImages(nn.Module):
    """A convolution + batch norm classifier called as ``model(pixel_values=...)``, returning a dict."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.bn = nn.BatchNorm2d(2)
        self.head = nn.Linear(2, 3)

    def forward(self, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
        z = torch.tanh(self.bn(self.conv(pixel_values)))
        return {"logits": self.head(z.mean(dim=(2, 3)))}


def test_batch_norm_fold_with_dict_inputs() -> None:
    torch.manual_seed(0)
    model = _BatchNormImages().double()
    with torch.no_grad():
        model.bn.running_mean.uniform_(-0.3, 0.3)
        model.bn.running_var.uniform_(0.5, 1.5)
    g = torch.Generator().manual_seed(1)
    data = {
        "pixel_values": torch.randn(8, 1, 5, 5, generator=g),
        "labels": torch.randint(0, 3, (8,), generator=g),
    }
    obj = Objective(model, data, batch_size=3, dtype=torch.float64)
    op = HessianOperator(obj)
    assert op.folded.pairs == [("conv", "bn")]
    v = torch.randn(op.shape[0], generator=g, dtype=torch.float64)
    torch.testing.assert_close(op @ v, _autograd_hessian(obj) @ v, rtol=1e-9, atol=1e-12)


def test_a_dict_batch_without_labels_is_refused() -> None:
    with pytest.raises(DataError, match="a dict batch needs the targets under 'labels'"):
        Objective(gpt2(), [{"input_ids": torch.zeros(2, 3, dtype=torch.long)}])


def test_all_padding_is_refused(reference) -> None:
    model, data, _ = reference
    empty = dict(data, labels=torch.full_like(data["labels"], -100))
    with pytest.raises(DataError, match="every token label is -100"):
        Objective(model, empty).loss()


def test_data_digest_of_dict_batches_sees_every_input() -> None:
    from landscape.objective.digest import data_digest

    data = padded_tokens()
    base = data_digest(Objective(gpt2(), data, batch_size=3))
    changed = dict(data, attention_mask=data["attention_mask"].clone())
    changed["attention_mask"][0, 0] = 0
    assert data_digest(Objective(gpt2(), changed, batch_size=3)) != base
    assert data_digest(Objective(gpt2(), dict(data), batch_size=3)) == base
