"""``sharpness`` with ``hvp`` and ``blocks`` (issue 20): the product reaches every operator of every
stage and is recorded; per-block spectra land in the result, its file and its resume stages."""

from __future__ import annotations

import importlib
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from landscape.analysis import SharpnessOptions, sharpness
from landscape.analysis.result import SharpnessResult
from landscape.errors import ConfigError
from landscape.hessian.blocks import block_spectra
from landscape.hessian.finite_difference import FiniteDifferenceWarning
from landscape.hessian.operator import HessianOperator
from landscape.hessian.testing import digits, make_cnn
from landscape.objective.core import Objective

pipeline = importlib.import_module("landscape.analysis.pipeline")


def _gpt2_objective() -> Objective:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        n_layer=1, n_head=2, n_embd=4, vocab_size=7, n_positions=8, bos_token_id=0, eos_token_id=0
    )
    model = transformers.GPT2LMHeadModel(config).double().eval()
    ids = torch.randint(1, 7, (4, 6), generator=torch.Generator().manual_seed(3))
    mask = torch.ones_like(ids)
    mask[1, 3:] = 0
    data = {"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)}
    return Objective(model, data, batch_size=2, dtype=torch.float64)


def _cnn_objective() -> Objective:
    return Objective(make_cnn(), digits(24), batch_size=12, dtype=torch.float64)


BLOCKS = dict(top_k=2, tol=1e-9, blocks="auto", density_runs=1, density_steps=6)


def test_blocks_of_gpt2_are_the_block_spectra_of_the_objective():
    obj = _gpt2_objective()
    res = sharpness(obj, **BLOCKS)
    ref = block_spectra(obj, "auto", top_k=2, tol=1e-9, runs=1, steps=6)
    assert (
        res.blocks.names
        == ref.names
        == [
            "embeddings",
            "transformer.h.0.norms",
            "transformer.h.0.attn",
            "transformer.h.0.mlp",
            "norms",
        ]
    )
    for got, want in zip(res.blocks.blocks, ref.blocks):
        np.testing.assert_allclose(got.eigenvalues, want.eigenvalues, rtol=1e-9)
    np.testing.assert_allclose(res.blocks.js_distance, ref.js_distance, rtol=1e-9, atol=1e-12)
    assert res.matvecs == res.eigen_matvecs + res.blocks.matvecs
    # the products ran exactly, through the math attention kernel, and the result says so
    assert res.hvp_info["hvp"] == "exact" and res.hvp_info["attention_backend"] == "math"
    assert res.hvp_info["hvp_fallback_op"] is None and res.hvp_info["finite_difference_step"] is None


def test_the_result_keeps_blocks_and_products_through_its_dict():
    res = sharpness(_cnn_objective(), **BLOCKS, hvp="finite-difference")
    back = SharpnessResult.from_dict(res.to_dict())
    assert back.blocks.names == res.blocks.names == ["features", "head"]
    np.testing.assert_array_equal(back.blocks.densities, res.blocks.densities)
    assert back.hvp_info == res.hvp_info and back.hvp_info["hvp"] == "finite-difference"
    assert back.hvp_info["attention_backend"] == "default" and back.hvp_info["finite_difference_step"]


def test_a_file_written_before_blocks_and_products_still_reads():
    d = sharpness(_cnn_objective(), top_k=1).to_dict()
    for key in ("blocks", "hvp_info"):
        del d[key]
    old = SharpnessResult.from_dict(d)
    assert old.blocks is None and old.hvp_info is None


@pytest.mark.parametrize("hvp", ["exact", "finite-difference"])
def test_hvp_reaches_every_operator_of_every_stage(hvp, monkeypatch):
    seen: list[str] = []
    real = HessianOperator.__init__

    def spy(self, *args, **kwargs):
        seen.append(kwargs.get("hvp", "exact"))
        real(self, *args, **kwargs)

    monkeypatch.setattr(HessianOperator, "__init__", spy)
    res = sharpness(
        _cnn_objective(),
        **BLOCKS,
        hvp=hvp,
        with_trace=True,
        trace_matvecs=6,
        density=True,
        per_layer_by="module",
        per_batch=1,
    )
    # eigen/trace/density share one; per layer: the full one + 5 modules; per batch: 1; blocks: 2
    assert len(seen) == 1 + 6 + 1 + 2 and set(seen) == {hvp}
    assert res.hvp_info["hvp"] == hvp


def test_hvp_finite_difference_gives_the_exact_eigenvalues_of_gpt2():
    obj = _gpt2_objective()
    exact = sharpness(obj, top_k=2, tol=1e-9)
    fd = sharpness(obj, top_k=2, tol=1e-9, hvp="finite-difference")
    np.testing.assert_allclose(fd.eigenvalues, exact.eigenvalues, rtol=1e-6)


class _FlashNet(nn.Module):
    """Attention through the CPU flash kernel called directly: no double backward, and no math
    switch reaches it."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(4, 12)
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = (t.transpose(1, 2) for t in self.qkv(x).view(*x.shape[:2], 3, 1, 4).unbind(2))
        attended = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v)[0]
        return self.head(attended.transpose(1, 2).reshape(*x.shape[:2], 4).mean(1))


def test_a_fallback_is_recorded_and_warned_once_for_all_stages():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, 5, 4, generator=g, dtype=torch.float64), torch.randint(0, 3, (8,), generator=g)
    obj = Objective(_FlashNet().double(), (x, y), dtype=torch.float64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = sharpness(obj, **BLOCKS, per_layer_by="module")
    fallbacks = [w for w in caught if issubclass(w.category, FiniteDifferenceWarning)]
    assert len(fallbacks) == 1  # the later stages start on finite differences
    assert "_scaled_dot_product_flash_attention_for_cpu" in res.hvp_info["hvp_fallback_op"]
    assert res.hvp_info["hvp"] == "finite-difference" and res.blocks.names == ["qkv", "head"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        pytest.param({"hvp": "approx"}, r"hvp='approx' is not valid", id="hvp"),
        pytest.param({"blocks": ()}, r"blocks=\(\) is not valid", id="blocks"),
        pytest.param({"blocks": ("nothing.*",)}, r"blocks='nothing\.\*' matches no parameter", id="glob"),
        pytest.param(
            {"hvp": "finite-difference", "backend": "pyhessian"},
            r"hvp='finite-difference' is not available with backend='pyhessian'",
            id="pyhessian",
        ),
    ],
)
def test_bad_hvp_and_blocks_are_refused_by_name(kwargs, match):
    pytest.importorskip("pyhessian") if kwargs.get("backend") else None
    with pytest.raises(ConfigError, match=match):
        sharpness(_cnn_objective(), top_k=1, **kwargs)


def test_blocks_resume_after_an_interruption(tmp_path, monkeypatch):
    full = sharpness(_cnn_objective(), **BLOCKS, seed=2)
    stages = tmp_path / "stages"

    def killed(*a, **k):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(pipeline, "block_spectra", killed)
        with pytest.raises(KeyboardInterrupt):
            sharpness(_cnn_objective(), **BLOCKS, seed=2, resume_dir=stages)
    assert sorted(p.name for p in stages.glob("*.key.json")) == ["eigen.key.json"]
    resumed = sharpness(_cnn_objective(), **BLOCKS, seed=2, resume_dir=stages)
    assert resumed.notes == ["stages read back from an interrupted run: eigen"]
    np.testing.assert_array_equal(resumed.blocks.js_distance, full.blocks.js_distance)
    again = sharpness(_cnn_objective(), **BLOCKS, seed=2, resume_dir=stages)
    assert again.notes == ["stages read back from an interrupted run: eigen, blocks"]
    np.testing.assert_array_equal(again.blocks.densities, full.blocks.densities)
    assert again.matvecs == full.matvecs
    # another product is another result: nothing is read back
    other = sharpness(_cnn_objective(), **BLOCKS, seed=2, resume_dir=stages, hvp="finite-difference")
    assert other.notes == []


def test_options_record_blocks_and_hvp():
    opts = SharpnessOptions(blocks=("a.*", "b.*"), hvp="finite-difference")
    d = opts.to_dict()
    assert d["blocks"] == ["a.*", "b.*"] and d["hvp"] == "finite-difference"
