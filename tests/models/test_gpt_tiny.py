"""``gpt-tiny``: a small tied GPT-2 from ``transformers``, sized from the ``text`` data, whose token-mean
loss at init is near log(vocab)."""

from __future__ import annotations

import math

import pytest
import torch

from landscape.data.datasets import DataSpec, load_dataset
from landscape.models.builders import ModelSpec, build_model, default_model_kwargs
from landscape.models.registry import MODELS, model_help
from landscape.objective.core import Objective

pytest.importorskip("transformers")


def test_the_data_sizes_fill_the_vocabulary_and_positions():
    spec = default_model_kwargs(ModelSpec("gpt-tiny", {"n_layer": 1}), (128,), 103)
    assert spec.kwargs == {"n_layer": 1, "n_positions": 128, "vocab_size": 103}
    given = default_model_kwargs(ModelSpec("gpt-tiny", {"vocab_size": 120}), (64,), 103)
    assert given.kwargs["vocab_size"] == 120  # what the user gave stays
    assert f"gpt-tiny: {MODELS['gpt-tiny'].help}" in model_help()


def test_gpt_tiny_is_a_tied_two_layer_gpt2_without_dropout():
    model = build_model(ModelSpec("gpt-tiny", {"vocab_size": 103, "n_positions": 64}))
    config = model.config
    assert (config.n_layer, config.n_embd, config.n_head, config.n_positions) == (2, 64, 4, 64)
    assert model.lm_head.weight is model.transformer.wte.weight
    assert (config.resid_pdrop, config.embd_pdrop, config.attn_pdrop) == (0.0, 0.0, 0.0)
    # 103 x 64 tokens + 64 x 64 positions + 2 blocks of 12 * 64^2 + 13 * 64 + the final norm
    assert sum(p.numel() for p in model.parameters()) == 103 * 64 + 64 * 64 + 2 * (12 * 64**2 + 13 * 64) + 128
    with pytest.raises(Exception, match=r"gpt-tiny's n_head 3 must divide its n_embd 64"):
        build_model(ModelSpec("gpt-tiny", {"n_head": 3}))


def test_its_token_mean_loss_on_text_at_init_is_near_log_vocab():
    spec = DataSpec("text", subset=64, kwargs={"seq_len": 32})
    data = load_dataset(spec)
    vocab = len(spec.kwargs["vocab"])
    torch.manual_seed(0)
    model = build_model(default_model_kwargs(ModelSpec("gpt-tiny"), (32,), vocab))
    result = Objective(model, data, batch_size=16, dtype=torch.float64).evaluate()
    assert math.isfinite(result.loss) and abs(result.loss - math.log(vocab)) < 0.25
    assert 0.0 <= result.accuracy < 0.2  # token accuracy, not NaN
