"""Filter normalization on transformers: filters per module type, norm parameters, tied weights."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from landscape import Objective
from landscape.surface import compute_surface, random_directions, snapshot

transformers = pytest.importorskip("transformers")

VOCAB, SEQ = 50, 8


class Logits(nn.Module):
    """A Hugging Face model as ``inputs -> logits`` (``key``: the keyword the inputs go to)."""

    def __init__(self, net: nn.Module, key: str = "input_ids") -> None:
        super().__init__()
        self.net = net
        self.key = key

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(**{self.key: x}).logits


def _token_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))


def _gpt2(seed: int = 0, tie: bool = True, layers: int = 1) -> nn.Module:
    torch.manual_seed(seed)
    config = transformers.GPT2Config(
        n_layer=layers,
        n_head=2,
        n_embd=16,
        vocab_size=VOCAB,
        n_positions=32,
        bos_token_id=0,
        eos_token_id=0,
        tie_word_embeddings=tie,
    )
    return transformers.GPT2LMHeadModel(config)


def _tokens(n: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, VOCAB, (n, SEQ), generator=g)
    return x, torch.randint(0, VOCAB, (n, SEQ), generator=g)


def _objective(net: nn.Module, dtype: torch.dtype = torch.float64) -> Objective:
    return Objective(Logits(net), _tokens(), loss_fn=_token_loss, dtype=dtype)


def _unit_ratios(d: torch.Tensor, w: torch.Tensor, axis: int) -> torch.Tensor:
    """``||d_i|| / ||w_i||`` for every output unit ``i`` along ``axis`` (written out, not via filters.py)."""
    other = [k for k in range(w.dim()) if k != axis]
    return d.double().pow(2).sum(dim=other).sqrt() / w.double().pow(2).sum(dim=other).sqrt()


@pytest.mark.parametrize("num", [1, 2], ids=["1d", "2d"])
@pytest.mark.parametrize(
    ("tie", "dtype"),
    [(True, torch.float64), (False, torch.float64), (True, torch.float32)],
    ids=["tied-float64", "untied-float64", "tied-float32"],
)
def test_every_gpt2_output_unit_has_the_weights_norm(num, tie, dtype):
    obj = _objective(_gpt2(layers=2, tie=tie), dtype=dtype)
    weights = snapshot(obj)
    dirs = random_directions(obj, num, seed=3, norm="filter")
    modules = dict(obj.model.named_modules())
    checked: dict[str, int] = {}
    for d in dirs:
        for name, w in weights.items():
            module = modules[name.rsplit(".", 1)[0]]
            kind = type(module).__name__
            if isinstance(module, nn.LayerNorm) or name.endswith(".bias"):
                assert not d[name].any(), f"{name} ({kind}) is not zeroed with ignore='biasbn'"
                continue
            # Conv1D stores (in, out): its output units are columns; Linear and Embedding: rows
            axis = 1 if kind == "Conv1D" else 0
            ratios = _unit_ratios(d[name], w, axis)
            torch.testing.assert_close(ratios, torch.ones_like(ratios), rtol=0, atol=1e-6, msg=name)
            checked[kind] = checked.get(kind, 0) + 1
    # token and position embeddings, 4 Conv1D (c_attn, attn.c_proj, c_fc, mlp.c_proj) per layer, and
    # the output head when it is not the token embedding
    expected = {"Embedding": 2 * num, "Conv1D": 8 * num, **({} if tie else {"Linear": num})}
    assert checked == expected


def test_gpt2_columns_differ_from_rows():
    """Under the tensor-shape rule a Conv1D's rows (input units) would get the weights' norms."""
    obj = _objective(_gpt2())
    weights = snapshot(obj)
    (d,) = random_directions(obj, 1, seed=0)
    name = "net.transformer.h.0.attn.c_attn.weight"
    rows = _unit_ratios(d[name], weights[name], 0)
    assert float((rows - 1).abs().max()) > 0.05


def test_transformer_encoder_attention_and_norm_parameters():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(d_model=8, nhead=2, dim_feedforward=12, batch_first=True)
    encoder = nn.TransformerEncoder(layer, num_layers=1, enable_nested_tensor=False)
    attn = encoder.layers[0].self_attn
    attn.bias_k = nn.Parameter(torch.randn(1, 1, 8))  # 3-D biases: bias parameters, not one filter
    attn.bias_v = nn.Parameter(torch.randn(1, 1, 8))
    model = nn.Sequential(encoder, nn.Flatten(), nn.Linear(4 * 8, 3))
    x = torch.randn(5, 4, 8, generator=torch.Generator().manual_seed(2))
    obj = Objective(model, (x, torch.arange(5) % 3), dtype=torch.float64)
    weights = snapshot(obj)
    d1, d2 = random_directions(obj, 2, seed=1)
    zeroed = [n for n in weights if "norm" in n or "bias" in n]
    assert "0.layers.0.self_attn.bias_k" in zeroed and "0.layers.0.norm1.weight" in zeroed
    for d in (d1, d2):
        for name, w in weights.items():
            if name in zeroed:
                assert not d[name].any(), name
            else:  # in_proj_weight (3E, E), out_proj, linear1/2 and the head: one filter per row
                ratios = _unit_ratios(d[name], w, 0)
                torch.testing.assert_close(ratios, torch.ones_like(ratios), rtol=0, atol=1e-12, msg=name)


def test_vit_position_vectors_and_patch_channels_have_the_weights_norm():
    torch.manual_seed(0)
    small = {"num_hidden_layers": 1, "num_attention_heads": 2, "hidden_size": 16, "intermediate_size": 32}
    config = transformers.ViTConfig(image_size=8, patch_size=4, num_channels=1, num_labels=3, **small)
    net = transformers.ViTForImageClassification(config)
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    obj = Objective(Logits(net, "pixel_values"), (x, torch.arange(4) % 3), dtype=torch.float64)
    assert obj.evaluate().num_samples == 4
    weights = snapshot(obj)
    for d in random_directions(obj, 2, seed=5):
        for name in ("net.vit.embeddings.position_embeddings", "net.vit.embeddings.cls_token"):
            w = weights[name]  # (1, P, D): one filter per position's vector, not one for all of them
            ratios = d[name].norm(dim=-1) / w.norm(dim=-1)
            assert ratios.numel() == w.shape[1]
            torch.testing.assert_close(ratios, torch.ones_like(ratios), rtol=0, atol=1e-12, msg=name)
        name = next(n for n in weights if n.endswith("projection.weight"))  # Conv2d: output channels
        ratios = _unit_ratios(d[name], weights[name], 0)
        torch.testing.assert_close(ratios, torch.ones_like(ratios), rtol=0, atol=1e-12)


def _tied_by_hand(direction: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The untied model's copy of a tied direction: the head moves exactly with the embedding."""
    out = dict(direction)
    out["net.lm_head.weight"] = direction["net.transformer.wte.weight"]
    return out


@pytest.mark.filterwarnings("ignore:There is a performance drop")  # vmap of CPU flash attention
@pytest.mark.parametrize("points_per_pass", [1, 3], ids=["sequential", "batched"])
def test_tied_and_untied_copies_give_the_same_surface(points_per_pass):
    tied_net = _gpt2(seed=4)
    assert tied_net.lm_head.weight is tied_net.transformer.wte.weight
    untied_net = _gpt2(seed=5, tie=False)
    untied_net.load_state_dict(tied_net.state_dict())
    assert untied_net.lm_head.weight is not untied_net.transformer.wte.weight
    tied, untied = _objective(tied_net), _objective(untied_net)
    dirs = random_directions(tied, 2, seed=7)
    # the shared tensor is one entry of the direction: perturbed once
    assert all("net.lm_head.weight" not in d for d in dirs)
    assert "net.transformer.wte.weight" in dirs[0]
    xs, ys = [-0.5, 0.0, 0.5], [-0.25, 0.4]
    kw = {"points_per_pass": points_per_pass, "chunk_size": 6, "quiet": True}
    a = compute_surface(tied, dirs, xs, ys, **kw)
    b = compute_surface(untied, [_tied_by_hand(d) for d in dirs], xs, ys, **kw)
    assert a.complete and b.complete
    assert abs(a.loss - b.loss).max() <= 1e-12 * abs(a.loss).max()
    # the tie matters: moving the untied copy's embedding alone gives another surface
    c = compute_surface(untied, dirs, xs, ys, **kw)
    assert abs(a.loss - c.loss).max() > 1e-3
    # the tied model is back at its base point, still tied
    assert tied_net.lm_head.weight is tied_net.transformer.wte.weight
    assert torch.equal(tied_net.transformer.wte.weight, untied_net.transformer.wte.weight)
