"""Per-layer curvature says when a block's tensor is tied (issue 20, item 4): GPT-2's output head is
the token embedding, so the ``transformer.wte.weight`` block holds the curvature of both uses."""

from __future__ import annotations

import pytest
import torch

from landscape.hessian.layer_blocks import per_layer, tied_names
from landscape.hessian.results import PerLayerResult
from landscape.objective.core import Objective

pytest.importorskip("transformers")

import tf_factories  # noqa: E402  (tests/transformers is on the path: conftest)


def test_the_tied_head_is_named_in_the_embedding_block():
    torch.manual_seed(0)
    model = tf_factories.gpt2(n_embd=4)
    assert tied_names(model) == {"transformer.wte.weight": ["lm_head.weight"]}
    obj = Objective(model, tf_factories.padded(), batch_size=8, dtype=torch.float64)
    res = per_layer(obj, tol=1e-3, trace_matvecs=2)
    tied = {e.name: e.tied_to for e in res.layers if e.tied_to}
    assert tied == {"transformer.wte.weight": ["lm_head.weight"]}
    back = PerLayerResult.from_dict(res.to_dict())
    assert [e.tied_to for e in back.layers] == [e.tied_to for e in res.layers]
    old = res.to_dict()
    for entry in old["layers"]:
        del entry["tied_to"]  # a file from before the field reads as untied
    assert all(e.tied_to == [] for e in PerLayerResult.from_dict(old).layers)


def test_an_untied_model_has_no_ties():
    assert tied_names(torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 2))) == {}
