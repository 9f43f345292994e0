"""Every sharpness measure on a Hugging Face GPT-2 objective of padded dict batches; relative flatness
of a ``Conv1D`` and of the tied ``lm_head`` against dense float64 Hessian blocks; PyHessian refuses dicts."""

from __future__ import annotations

import math

import pytest
import tf_factories as tf
import torch

from landscape.analysis.pyhessian_backend import pyhessian_spectrum
from landscape.errors import ConfigError
from landscape.hessian.attention import second_order_attention
from landscape.measures import MeasureOptions, relative_flatness
from landscape.measures.registry import MEASURES
from landscape.measures.relative import linear_layers
from landscape.objective.core import Objective


def _objective(batch_size: int = 5) -> Objective:
    torch.manual_seed(0)
    model = tf.gpt2(n_embd=4).double()
    return Objective(model, tf.stacked(tf.PaddedTokens(12, seed=3)), batch_size=batch_size)


def _dense_block(obj: Objective, idx: int) -> torch.Tensor:
    """The float64 Hessian of the token mean in the stored weight ``obj.params[idx]``."""
    w0 = obj.params[idx].detach()
    full = obj.param_dict()

    def loss(w: torch.Tensor) -> torch.Tensor:
        d = dict(full)
        d[obj.param_names[idx]] = w.reshape(w0.shape)
        return sum(wt * obj.functional_batch_loss(d, x, y) for x, y, wt in obj.batches())

    with second_order_attention():
        return torch.autograd.functional.hessian(loss, w0.reshape(-1))


def _petzka(W: torch.Tensor, H4: torch.Tensor) -> float:
    """sum_{s, s'} <w_s, w_s'> Tr(H_{s, s'}) for rows w_s of W (out x in), H4 shaped (out, in, out, in)."""
    out_dim = W.shape[0]
    return sum(
        float(W[s] @ W[t]) * float(torch.diagonal(H4[s, :, t, :]).sum())
        for s in range(out_dim)
        for t in range(out_dim)
    )


def test_relative_flatness_of_a_conv1d_uses_its_output_rows():
    obj = _objective()
    res = relative_flatness(
        obj, MeasureOptions(layer="transformer.h.0.mlp.c_fc", relative_flatness_method="exact")
    )
    idx = obj.param_names.index("transformer.h.0.mlp.c_fc.weight")
    stored = obj.params[idx].detach()  # (in, out)
    n_in, n_out = stored.shape
    H4 = _dense_block(obj, idx).reshape(n_in, n_out, n_in, n_out).permute(1, 0, 3, 2)
    assert res.value == pytest.approx(_petzka(stored.T, H4), rel=1e-9)
    assert res.settings["layer"] == "transformer.h.0.mlp.c_fc.weight"


def test_relative_flatness_of_the_tied_head_is_the_shared_weights_curvature():
    obj = _objective()
    res = relative_flatness(obj, MeasureOptions(layer="lm_head", relative_flatness_method="exact"))
    idx = obj.param_names.index("transformer.wte.weight")  # the head's weight is the embedding's
    W = obj.params[idx].detach()
    H4 = _dense_block(obj, idx).reshape(*W.shape, *W.shape)
    assert res.value == pytest.approx(_petzka(W, H4), rel=1e-9)
    assert res.settings["layer"] == "lm_head.weight"
    assert res.settings["tied_to"] == "transformer.wte.weight"


def test_relative_flatness_offers_linear_layers_only():
    obj = _objective()
    names = [f"{fl.module}.weight" for fl in linear_layers(obj)]
    assert "lm_head.weight" in names and "transformer.h.0.attn.c_attn.weight" in names
    assert not any("wte" in n or "wpe" in n for n in names)
    with pytest.raises(
        ConfigError, match=r"^layer='transformer.wte' is not a linear layer's weight; choose one of \["
    ):
        relative_flatness(obj, MeasureOptions(layer="transformer.wte"))


FAST = MeasureOptions(
    layer="lm_head",
    steps=3,
    mc_samples=4,
    bisection_steps=3,
    hutchinson_probes=4,
    random_max_samples=3,
    relative_flatness_method="hutchinson",
)


@pytest.mark.parametrize("name", sorted(MEASURES), ids=str)
def test_every_measure_runs_on_a_token_objective_and_ignores_the_batch_size(name):
    """The same value (and seed) at two batch sizes: each batch weighs by its counted tokens."""
    fn = MEASURES[name].compute
    a, b = fn(_objective(batch_size=5), FAST), fn(_objective(batch_size=12), FAST)
    assert math.isfinite(a.value)
    assert a.value == pytest.approx(b.value, rel=1e-6, abs=1e-9)


def test_pyhessian_refuses_dict_inputs_by_name():
    from landscape.analysis.options import SharpnessOptions

    with pytest.raises(
        ConfigError, match=r"^backend='pyhessian' .*cannot take dict inputs .*use backend='landscape'$"
    ):
        pyhessian_spectrum(_objective(), SharpnessOptions())


class TensorLM(torch.nn.Module):
    """A GPT-2 called with a tensor of token ids (no dict), so only the token check can refuse it."""

    def __init__(self) -> None:
        super().__init__()
        self.lm = tf.gpt2(n_embd=4)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.lm(input_ids=input_ids).logits


def test_pyhessian_refuses_a_token_objective_by_name():
    from landscape.analysis.options import SharpnessOptions

    data = tf.stacked(tf.PaddedTokens(6, seed=3))
    obj = Objective(TensorLM().double(), (data["input_ids"], data["labels"]), batch_size=3, causal=True)
    with pytest.raises(
        ConfigError, match=r"^backend='pyhessian' weighs batches by sequences, not by counted tokens"
    ):
        pyhessian_spectrum(obj, SharpnessOptions())
