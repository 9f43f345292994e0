"""Token-level objectives on a Hugging Face GPT-2 with padded dict batches (issue 20, items 1 and 7).

The reference is the mean over all counted tokens of the whole set, written out by hand on one batch
of every sequence (``transformer_cases.token_mean``), with its gradient and dense Hessian in float64.
"""

from __future__ import annotations

import pytest
import torch

from landscape.hessian import HessianOperator
from landscape.hessian.krylov import lanczos
from landscape.objective.core import Objective

pytest.importorskip("transformers")

from transformer_cases import dense_reference, gpt2, padded_tokens, token_mean  # noqa: E402

BATCH_SIZES = [pytest.param(1, id="batch-1"), pytest.param(3, id="batch-3"), pytest.param(None, id="all")]


@pytest.fixture(scope="module")
def reference():
    model, data = gpt2(), padded_tokens()
    return model, data, dense_reference(model, data, causal=True)


@pytest.mark.parametrize("batch_size", BATCH_SIZES)
def test_loss_and_gradient_are_the_token_mean_at_every_batch_size(reference, batch_size) -> None:
    model, data, (loss, grad, _) = reference
    obj = Objective(model, data, batch_size=batch_size, dtype=torch.float64)
    assert obj.causal and obj.token_level
    assert obj.num_samples == 7 and obj.num_terms == sum(n - 1 for n in (6, 3, 5, 2, 6, 4, 1))
    assert abs(obj.evaluate().loss - loss) < 1e-12
    got_loss, got_grad = obj.gradient()
    assert abs(got_loss - loss) < 1e-12
    torch.testing.assert_close(torch.cat([g.reshape(-1) for g in got_grad]), grad, rtol=1e-10, atol=1e-13)


def test_sequence_weighting_would_be_a_different_function(reference) -> None:
    """The weighting the token mean replaces (batch means weighted by sequences) differs here, so the
    test above can tell the two apart."""
    model, data, (loss, _, _) = reference
    obj = Objective(model, data, batch_size=3, dtype=torch.float64)
    by_sequences = sum(
        len(y) / obj.num_samples * float(obj.batch_loss(x, y).detach()) for x, y, _ in obj.batches()
    )
    assert abs(by_sequences - loss) > 1e-2


@pytest.mark.parametrize("mode", ["rev-rev", "fwd-rev"])
@pytest.mark.parametrize("batch_size", BATCH_SIZES)
def test_products_and_top_eigenvalues_equal_the_dense_token_mean_hessian(reference, batch_size, mode) -> None:
    model, data, (_, _, H) = reference
    obj = Objective(model, data, batch_size=batch_size, dtype=torch.float64)
    op = HessianOperator(obj, mode=mode, block_size=2)
    V = torch.randn(op.shape[0], 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    torch.testing.assert_close(op @ V, H @ V, rtol=1e-9, atol=1e-12)
    top = lanczos(op, 2, tol=1e-10, seed=0).eigenvalues
    want = torch.linalg.eigvalsh(H).flip(0)[:2].numpy()
    assert abs(top - want).max() < 1e-8 * abs(want).max()
    assert op.info["attention_backend"] == "math" and op.info["hvp"] == "exact"


def test_token_accuracy_is_over_counted_tokens(reference) -> None:
    model, data, _ = reference
    with torch.no_grad():
        logits = model(input_ids=data["input_ids"], attention_mask=data["attention_mask"]).logits
    pred, labels = logits[:, :-1].argmax(-1), data["labels"][:, 1:]
    counted = labels != -100
    want = float(((pred == labels) & counted).sum()) / float(counted.sum())
    for batch_size in (1, 3, None):
        acc = Objective(model, data, batch_size=batch_size, dtype=torch.float64).evaluate().accuracy
        assert acc == pytest.approx(want, abs=1e-15)


def test_causal_shift_is_decided_from_the_model_and_can_be_overridden(reference) -> None:
    model, data, _ = reference
    auto = Objective(model, data, dtype=torch.float64)
    assert auto.metadata()["causal"] is True and auto.metadata()["mean_over"] == "tokens"
    assert auto.metadata()["num_tokens"] == 20
    plain = Objective(model, data, dtype=torch.float64, causal=False)
    assert plain.num_terms == int((data["labels"] != -100).sum()) == 27
    with torch.no_grad():
        logits = model(input_ids=data["input_ids"], attention_mask=data["attention_mask"]).logits
    assert plain.loss() == pytest.approx(float(token_mean(logits, data["labels"], causal=False)), abs=1e-12)


def test_masked_lm_is_not_shifted() -> None:
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=7, hidden_size=4, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8,
        max_position_embeddings=8, pad_token_id=0,
    )  # fmt: skip
    model = BertForMaskedLM(config).double().eval()
    data = padded_tokens()
    obj = Objective(model, data, batch_size=2, dtype=torch.float64)
    assert obj.causal is False
    with torch.no_grad():
        logits = model(input_ids=data["input_ids"], attention_mask=data["attention_mask"]).logits
    assert obj.loss() == pytest.approx(float(token_mean(logits, data["labels"], causal=False)), abs=1e-12)


def test_a_causal_loss_given_by_the_caller_decides_accuracy_too() -> None:
    """A plain module (no Hugging Face class to read causal-ness from) with CrossEntropy(causal=True)."""
    from torch import nn

    from landscape.objective.losses import CrossEntropy

    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(7, 5), nn.Linear(5, 7)).double()
    data = padded_tokens()
    obj = Objective(model, (data["input_ids"], data["labels"]), loss_fn=CrossEntropy(causal=True))
    assert obj.causal and obj.num_terms == 20
    with torch.no_grad():
        logits = model(data["input_ids"])
    assert obj.loss() == pytest.approx(float(token_mean(logits, data["labels"], causal=True)), abs=1e-12)
    pred, labels = logits[:, :-1].argmax(-1), data["labels"][:, 1:]
    counted = labels != -100
    assert obj.evaluate().accuracy == pytest.approx(float(((pred == labels) & counted).sum()) / 20, abs=1e-15)
    assert not Objective(model, (data["input_ids"], data["labels"])).causal  # a plain module: not causal
