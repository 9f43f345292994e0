"""Surface points on dict batches: the one-point path (why batched points fall back to it), reduced
precision with token accuracy, and batch-norm recalibration of a model called with keywords."""

from __future__ import annotations

import pytest
import tf_factories as tf
import torch
from torch import nn

from landscape.objective.core import Objective
from landscape.surface.batched import choose_points_per_pass
from landscape.surface.grid import PointEvaluator
from landscape.surface.precision import evaluate_in_precision


def _objective(dtype: torch.dtype = torch.float64) -> Objective:
    torch.manual_seed(0)
    return Objective(tf.gpt2(n_embd=8), tf.stacked(tf.PaddedTokens(10, seed=7)), batch_size=4, dtype=dtype)


def _direction(obj: Objective, seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        n: torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.1 for n, p in zip(obj.param_names, obj.params)
    }


@pytest.mark.parametrize("requested", ["auto", 8])
def test_dict_inputs_are_evaluated_one_point_per_pass_and_say_so(requested):
    obj = _objective()
    points, reason = choose_points_per_pass(PointEvaluator(obj, [_direction(obj)]), requested)
    assert points == 1
    assert reason == "the inputs are dicts (Hugging Face batches): evaluated one point per pass"


def test_a_point_is_the_token_mean_at_the_moved_weights():
    obj = _objective()
    d = _direction(obj)
    data = tf.stacked(tf.PaddedTokens(10, seed=7))
    moved = {n: p.detach() + 0.7 * d[n] for n, p in zip(obj.param_names, obj.params)}
    torch.manual_seed(0)
    reference = tf.gpt2(n_embd=8).double()
    with torch.no_grad():  # the tied head follows the embedding
        for n, p in reference.named_parameters():
            p.copy_(moved[n])
    assert reference.lm_head.weight is reference.transformer.wte.weight
    loss, accuracy = PointEvaluator(obj, [d]).evaluate([0.7])
    assert loss == pytest.approx(tf.token_mean_of(reference, data), abs=1e-12)
    assert 0 <= accuracy <= 1


def test_reduced_precision_scores_token_outputs():
    obj = _objective(torch.float32)
    exact = obj.evaluate()
    loss, accuracy = evaluate_in_precision(obj, "bfloat16")
    assert loss == pytest.approx(exact.loss, rel=2e-2)
    assert accuracy == pytest.approx(exact.accuracy, abs=0.15)  # token accuracy, no longer NaN


class KeywordBN(nn.Module):
    """A model called with keywords (``model(input_ids=...)``) that returns a dict, with batch norm."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(tf.VOCAB, 6)
        self.norm = nn.BatchNorm1d(6)
        self.head = nn.Linear(6, 3)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        mask = attention_mask.unsqueeze(-1).to(self.embed.weight.dtype)
        pooled = (self.embed(input_ids) * mask).sum(1) / mask.sum(1)
        return {"logits": self.head(self.norm(pooled))}


def test_recalibration_runs_the_model_with_keywords():
    torch.manual_seed(0)
    model = KeywordBN().double()
    tokens = tf.stacked(tf.PaddedTokens(10, seed=7))
    data = {**tokens, "labels": torch.arange(10) % 3}
    obj = Objective(model, data, batch_size=10)
    ev = PointEvaluator(obj, [_direction(obj)], bn="recalibrate")
    loss, _ = ev.evaluate([0.0])
    # recalibrated over one batch of all examples: the running statistics are that batch's moments
    inputs = {k: v for k, v in tokens.items() if k != "labels"}
    mask = inputs["attention_mask"].unsqueeze(-1).double()
    pooled = (model.embed(inputs["input_ids"]) * mask).sum(1) / mask.sum(1)
    torch.testing.assert_close(model.norm.running_mean, pooled.mean(0).detach(), rtol=0, atol=1e-12)
    with torch.no_grad():
        logits = model.eval()(**inputs)["logits"]  # on the recalibrated running statistics
    assert loss == pytest.approx(float(nn.functional.cross_entropy(logits, data["labels"])), abs=1e-12)
