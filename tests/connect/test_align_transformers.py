"""Weight matching refuses attention models and tied parameters by name, before any torch.fx tracing."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from landscape.connect import AlignmentError, align_models, connect_checkpoints, permutation_spec
from landscape.connect.align import attention_module, tied_parameters
from landscape.data.datasets import DataSpec
from landscape.errors import LandscapeError
from landscape.models.builders import ModelSpec
from landscape.models.checkpoints import save_checkpoint

ATTENTION_MESSAGE = (
    r"^weight matching of attention models is not supported: {where} is a {kind} .*align=None\)$"
)


def _encoder() -> nn.Module:
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(d_model=8, nhead=2, dim_feedforward=12, batch_first=True)
    encoder = nn.TransformerEncoder(layer, num_layers=1, enable_nested_tensor=False)
    return nn.Sequential(encoder, nn.Flatten(), nn.Linear(4 * 8, 3))


def digits_encoder() -> nn.Module:
    """A factory for checkpoints: digits (N, 1, 8, 8) as 8 tokens of 8 features, one encoder layer."""
    layer = nn.TransformerEncoderLayer(d_model=8, nhead=2, dim_feedforward=12, batch_first=True)
    encoder = nn.TransformerEncoder(layer, num_layers=1, enable_nested_tensor=False)
    return nn.Sequential(nn.Flatten(1, 2), encoder, nn.Flatten(), nn.Linear(64, 10))


class _Logits(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(input_ids=x).logits


def _hf(kind: str) -> nn.Module:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    small = {"num_hidden_layers": 1, "num_attention_heads": 2, "hidden_size": 16, "intermediate_size": 32}
    if kind == "gpt2":
        config = transformers.GPT2Config(
            n_layer=1, n_head=2, n_embd=16, vocab_size=50, n_positions=32, bos_token_id=0, eos_token_id=0
        )
        return transformers.GPT2LMHeadModel(config)
    if kind == "bert":
        config = transformers.BertConfig(vocab_size=50, max_position_embeddings=32, num_labels=3, **small)
        return transformers.BertForSequenceClassification(config)
    config = transformers.ViTConfig(image_size=8, patch_size=4, num_channels=1, num_labels=3, **small)
    return transformers.ViTForImageClassification(config)


@pytest.mark.parametrize(
    ("build", "where", "kind"),
    [
        (_encoder, r"'0\.layers\.0\.self_attn'", "MultiheadAttention"),
        # module paths of Hugging Face models change between releases; the class names do not
        (lambda: _hf("gpt2"), r"'transformer\.h\.0\.attn'", "GPT2Attention"),
        (lambda: _hf("bert"), r"'bert\.[\w.]*0\.attention'", "BertAttention"),
        (lambda: _hf("vit"), r"'vit\.[\w.]*0\.attention'", "ViTAttention"),
        (lambda: nn.MultiheadAttention(8, 2), "the model", "MultiheadAttention"),
    ],
    ids=["transformer-encoder", "gpt2", "bert", "vit", "bare-attention"],
)
def test_attention_models_are_refused_naming_the_module(build, where, kind):
    model = build()
    with pytest.raises(AlignmentError, match=ATTENTION_MESSAGE.format(where=where, kind=kind)) as info:
        permutation_spec(model)
    assert isinstance(info.value, LandscapeError)
    assert "\n" not in str(info.value) and "fx" not in str(info.value)


def test_align_models_refuses_a_wrapped_gpt2_before_running_it():
    a, b = _Logits(_hf("gpt2")), _Logits(_hf("gpt2"))
    x = torch.randint(0, 50, (2, 5))
    match = ATTENTION_MESSAGE.format(where=r"'net\.transformer\.h\.0\.attn'", kind="GPT2Attention")
    with pytest.raises(AlignmentError, match=match):
        align_models(a, b, x)


def test_attention_module_finds_none_in_a_plain_network():
    assert attention_module(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))) is None


class _TiedAutoencoder(nn.Module):
    """Decoder weight tied to the encoder's (another module, the same tensor)."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Linear(6, 6)
        self.dec = nn.Linear(6, 6)
        self.dec.weight = self.enc.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dec(torch.relu(self.enc(x)))


def test_tied_parameters_are_refused_naming_both():
    model = _TiedAutoencoder()
    assert tied_parameters(model) == [["enc.weight", "dec.weight"]]
    with pytest.raises(
        AlignmentError, match=r"tied parameters .*'enc.weight' and 'dec.weight' are one tensor"
    ):
        permutation_spec(model)
    assert tied_parameters(nn.Sequential(nn.Linear(6, 6), nn.Linear(6, 6))) == []


def test_connect_refuses_alignment_of_an_encoder_before_any_path(tmp_path):
    spec = ModelSpec(f"{__name__}:digits_encoder")
    ends = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        ends.append(
            save_checkpoint(
                tmp_path / f"m{seed}.pt", digits_encoder(), model_spec=spec, data_spec=DataSpec("digits")
            )
        )
    out = tmp_path / "out"
    match = ATTENTION_MESSAGE.format(where=r"'1\.layers\.0\.self_attn'", kind="MultiheadAttention")
    with pytest.raises(AlignmentError, match=match):
        connect_checkpoints(*ends, points=3, samples=32, align="weight-matching", out=out, device="cpu")
    assert not (out / "connect.json").exists()
    # without alignment the same checkpoints connect
    result = connect_checkpoints(*ends, points=3, samples=32, device="cpu")
    assert set(result.paths) == {"linear"}
