"""Per-block spectra and the block-heterogeneity summary (issue 20, "Per-block spectra"), and the dense
reference they are checked against.

References: the principal sub-blocks ``H[idx][:, idx]`` of the dense float64 Hessian (eigvalsh), and
``scipy.spatial.distance.jensenshannon`` of the same discretized densities.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import jensenshannon

from landscape.errors import ConfigError
from landscape.hessian import HessianOperator
from landscape.hessian.blocks import (
    BlockSpectra,
    auto_blocks,
    block_groups,
    block_patterns,
    block_spectra,
    js_distances,
)
from landscape.hessian.testing import dense_hessian, digits, make_cnn, make_mlp
from landscape.objective.core import Objective

GPT2_AUTO = {
    "embeddings": ["transformer.wte.weight", "transformer.wpe.weight"],
    "transformer.h.0.norms": [
        "transformer.h.0.ln_1.weight",
        "transformer.h.0.ln_1.bias",
        "transformer.h.0.ln_2.weight",
        "transformer.h.0.ln_2.bias",
    ],
    "transformer.h.0.attn": [
        "transformer.h.0.attn.c_attn.weight",
        "transformer.h.0.attn.c_attn.bias",
        "transformer.h.0.attn.c_proj.weight",
        "transformer.h.0.attn.c_proj.bias",
    ],
    "transformer.h.0.mlp": [
        "transformer.h.0.mlp.c_fc.weight",
        "transformer.h.0.mlp.c_fc.bias",
        "transformer.h.0.mlp.c_proj.weight",
        "transformer.h.0.mlp.c_proj.bias",
    ],
    "norms": ["transformer.ln_f.weight", "transformer.ln_f.bias"],
}


def _gpt2_objective() -> Objective:
    """A 1-layer Hugging Face GPT-2 (312 parameters, tied head, default 'sdpa' attention) on padded
    dict batches of different real lengths, float64."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        n_layer=1, n_head=2, n_embd=4, vocab_size=7, n_positions=8, bos_token_id=0, eos_token_id=0
    )
    model = transformers.GPT2LMHeadModel(config).double().eval()
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(1, 7, (5, 6), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 4:] = 0
    mask[3, 2:] = 0
    data = {"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)}
    return Objective(model, data, batch_size=3, dtype=torch.float64)


@pytest.fixture(scope="module")
def gpt2_case() -> tuple[Objective, torch.Tensor]:
    obj = _gpt2_objective()
    return obj, dense_hessian(obj)


@pytest.fixture(scope="module")
def cnn_case() -> tuple[Objective, torch.Tensor]:
    obj = Objective(make_cnn(), digits(24), batch_size=12, dtype=torch.float64)
    return obj, dense_hessian(obj)


def _rows(obj: Objective, params: list[str]) -> torch.Tensor:
    """The flat indices of the named tensors (the operator's order)."""
    offsets = np.cumsum([0] + [p.numel() for p in obj.params])
    return torch.cat(
        [
            torch.arange(offsets[obj.param_names.index(n)], offsets[obj.param_names.index(n) + 1])
            for n in params
        ]
    )


# -- the dense reference ----------------------------------------------------------------------------------


def test_dense_hessian_of_gpt2_is_the_operator_s_matrix(gpt2_case):
    # torch.func.hessian's vmapped rows are off by 0.2 on GPT-2's LayerNorm rows (asymmetric); the
    # reference must agree with the exact product, an independent code path
    obj, H = gpt2_case
    op = HessianOperator(obj, mode="rev-rev")
    V = torch.randn(H.shape[0], 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(op @ V, H @ V, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("make", [pytest.param(make_mlp, id="mlp"), pytest.param(make_cnn, id="cnn")])
def test_dense_hessian_is_unchanged_on_the_existing_models(make):
    obj = Objective(make(), digits(20), batch_size=8, dtype=torch.float64)
    names, sizes = obj.param_names, [p.numel() for p in obj.params]
    shapes, full, batches = [p.shape for p in obj.params], obj.param_dict(), list(obj.batches())

    def f(flat: torch.Tensor) -> torch.Tensor:
        d = dict(full)
        d.update({n: c.view(s) for n, c, s in zip(names, torch.split(flat, sizes), shapes)})
        return sum(w * obj.functional_batch_loss(d, x, y) for x, y, w in batches)

    before = torch.func.hessian(f)(torch.cat([p.detach().reshape(-1) for p in obj.params]))
    torch.testing.assert_close(dense_hessian(obj), (before + before.T) / 2, rtol=1e-12, atol=1e-14)


# -- which parameters form a block ------------------------------------------------------------------------


def test_auto_blocks_of_gpt2_are_layer_attention_mlp_norms_and_embeddings(gpt2_case):
    obj, _ = gpt2_case
    groups = auto_blocks(obj.model, obj.param_names)
    assert {k: [obj.param_names[i] for i in v] for k, v in groups.items()} == GPT2_AUTO


def test_auto_blocks_of_a_cnn_are_its_top_level_modules():
    model = make_cnn()
    names = [n for n, _ in model.named_parameters()]
    groups = auto_blocks(model, names)
    assert list(groups) == ["features", "head"]
    assert [names[i] for i in groups["head"]] == ["head.weight", "head.bias"]
    assert sorted(i for v in groups.values() for i in v) == list(range(len(names)))


def test_auto_blocks_of_a_torch_transformer_encoder():
    layer = torch.nn.TransformerEncoderLayer(d_model=4, nhead=2, dim_feedforward=8, batch_first=True)
    model = torch.nn.Sequential()
    model.add_module("encoder", torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False))
    model.add_module("head", torch.nn.Linear(4, 3))
    names = [n for n, _ in model.named_parameters()]
    groups = auto_blocks(model, names)
    assert list(groups) == [
        "encoder.layers.0.self_attn",
        "encoder.layers.0.linear1",
        "encoder.layers.0.linear2",
        "encoder.layers.0.norms",
        "encoder.layers.1.self_attn",
        "encoder.layers.1.linear1",
        "encoder.layers.1.linear2",
        "encoder.layers.1.norms",
        "head",
    ]


def test_glob_blocks_take_the_matching_parameters(gpt2_case):
    obj, _ = gpt2_case
    patterns = block_patterns("transformer.h.0.attn.*, transformer.h.0.mlp.c_fc.*")
    assert patterns == ("transformer.h.0.attn.*", "transformer.h.0.mlp.c_fc.*")
    groups = block_groups(obj.model, obj.param_names, patterns)
    assert [obj.param_names[i] for i in groups["transformer.h.0.mlp.c_fc.*"]] == [
        "transformer.h.0.mlp.c_fc.weight",
        "transformer.h.0.mlp.c_fc.bias",
    ]
    assert [obj.param_names[i] for i in groups["transformer.h.0.attn.*"]] == GPT2_AUTO["transformer.h.0.attn"]
    assert block_patterns(" auto ") == "auto"


@pytest.mark.parametrize(
    ("blocks", "match"),
    [
        pytest.param(("decoder.*",), r"blocks='decoder\.\*' matches no parameter", id="no-match"),
        pytest.param((), r"blocks=\(\) is not valid; use 'auto'", id="empty"),
        pytest.param(("head.*", " "), r"blocks=.* is not valid", id="blank"),
        pytest.param("head.*", r"blocks='head\.\*' is not valid", id="a-string-not-auto"),
    ],
)
def test_bad_blocks_are_refused_by_name(blocks, match):
    model = make_mlp()
    with pytest.raises(ConfigError, match=match):
        block_groups(model, [n for n, _ in model.named_parameters()], blocks)


# -- the spectra -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["gpt2_case", "cnn_case"])
def test_block_eigenvalues_are_those_of_the_dense_principal_sub_blocks(case, request):
    obj, H = request.getfixturevalue(case)
    result = block_spectra(obj, "auto", top_k=3, tol=1e-10, runs=2, steps=12)
    assert result.names == list(auto_blocks(obj.model, obj.param_names))
    for b in result.blocks:
        idx = _rows(obj, b.params)
        want = torch.linalg.eigvalsh(H[idx][:, idx]).flip(0)[: len(b.eigenvalues)].numpy()
        assert b.num_params == len(idx) and len(b.eigenvalues) == min(3, len(idx))
        np.testing.assert_allclose(b.eigenvalues, want, rtol=1e-8, atol=1e-12 * abs(want[0]))
    assert result.matvecs == sum(b.matvecs for b in result.blocks)


def test_block_density_is_the_sub_block_s_quadrature(gpt2_case):
    # with as many Lanczos steps as the block's dimension the quadrature is exact: the nodes are the
    # block's eigenvalues, and the weight-averaged node is v^T H_bb v / ||v||^2 = tr(H_bb)/n for
    # Rademacher v only on average, so check the extreme nodes against the sub-block's spectrum
    obj, H = gpt2_case
    result = block_spectra(obj, ["transformer.ln_f.*"], top_k=1, runs=1, steps=8)
    (b,) = result.blocks
    ev = torch.linalg.eigvalsh(H[_rows(obj, b.params)][:, _rows(obj, b.params)]).numpy()
    np.testing.assert_allclose(np.sort(b.nodes[0]), ev, rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(b.weights.sum(), 1.0, rtol=1e-12)
    # each smoothed density integrates to one on the shared grid
    dt = result.grid[1] - result.grid[0]
    np.testing.assert_allclose(result.densities.sum(axis=1) * dt, 1.0, rtol=1e-3)


def test_js_distances_equal_scipy_on_the_same_discretized_densities(gpt2_case):
    obj, _ = gpt2_case
    result = block_spectra(obj, "auto", top_k=1, runs=2, steps=10)
    B = len(result.blocks)
    want = np.array(
        [[jensenshannon(result.densities[i], result.densities[j]) for j in range(B)] for i in range(B)]
    )
    np.testing.assert_allclose(result.js_distance, want, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(result.mean_js_distance, want[np.triu_indices(B, 1)].mean(), rtol=1e-12)
    assert np.all(result.js_distance <= np.sqrt(np.log(2)) + 1e-12)
    assert result.mean_js_distance > 0.05  # a transformer's blocks differ


def test_js_distance_of_equal_and_disjoint_densities():
    grid = np.linspace(-1, 1, 50)
    a = np.where(grid < 0.5, np.exp(-(grid**2) / 0.01), 0.0)
    disjoint = np.where(grid > 0.9, 1.0, 0.0)
    d = js_distances(np.vstack([a, 3 * a, disjoint]))
    assert d[0, 1] == pytest.approx(0.0, abs=1e-8)  # the scale is not the shape (sqrt of rounding)
    assert d[0, 2] == pytest.approx(np.sqrt(np.log(2)), rel=1e-12)  # the largest distance


def test_block_spectra_survive_their_json(tmp_path, gpt2_case):
    obj, _ = gpt2_case
    result = block_spectra(obj, ["transformer.wpe.*", "transformer.ln_f.*"], top_k=2, runs=1, steps=6)
    back = BlockSpectra.load(result.save(tmp_path / "blocks.json"))
    assert back.names == result.names and back.selection == ["transformer.wpe.*", "transformer.ln_f.*"]
    np.testing.assert_array_equal(back.js_distance, result.js_distance)
    np.testing.assert_array_equal(back.densities, result.densities)
    np.testing.assert_array_equal(back.blocks[1].nodes, result.blocks[1].nodes)
    assert back.mean_js_distance == result.mean_js_distance


def test_finite_difference_block_products_agree_with_exact(gpt2_case):
    obj, _ = gpt2_case
    exact = block_spectra(obj, ["transformer.h.0.attn.*"], top_k=2, runs=1, steps=6)
    fd = block_spectra(obj, ["transformer.h.0.attn.*"], top_k=2, runs=1, steps=6, hvp="finite-difference")
    np.testing.assert_allclose(fd.blocks[0].eigenvalues, exact.blocks[0].eigenvalues, rtol=1e-5)
