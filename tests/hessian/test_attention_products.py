"""Hessian-vector products through scaled-dot-product attention (issue 20, item 2).

PyTorch's default attention kernels have no double backward; the operator runs every exact product
on the math kernel, and only there. References: the dense Hessian by ``torch.autograd.functional``
on the math kernel, in float64.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from landscape.hessian import HessianOperator
from landscape.objective.core import Objective

MODES = [pytest.param("rev-rev", id="rev-rev"), pytest.param("fwd-rev", id="fwd-rev")]


def _gpt2() -> nn.Module:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        n_layer=1, n_head=2, n_embd=4, vocab_size=7, n_positions=8, bos_token_id=0, eos_token_id=0
    )
    model = transformers.GPT2LMHeadModel(config).eval()
    assert model.config._attn_implementation == "sdpa"  # PyTorch's default kernels, not eager
    return model


def _gpt2_data() -> dict[str, torch.Tensor]:
    ids = torch.randint(1, 7, (4, 6), generator=torch.Generator().manual_seed(3))
    mask = torch.ones_like(ids)
    mask[1, 4:] = 0
    return {"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)}


class _EncoderClassifier(nn.Module):
    """``nn.TransformerEncoder`` (no eager switch exists for it) with a mean-pooled linear head."""

    def __init__(self) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(
            d_model=4, nhead=2, dim_feedforward=8, dropout=0.0, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers=1, enable_nested_tensor=False)
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x).mean(dim=1))


def _encoder_objective(dtype: torch.dtype) -> Objective:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(4)
    x, y = torch.randn(6, 5, 4, generator=g), torch.randint(0, 3, (6,), generator=g)
    return Objective(_EncoderClassifier(), (x, y), batch_size=4, dtype=dtype)


def _gpt2_objective(dtype: torch.dtype) -> Objective:
    return Objective(_gpt2(), _gpt2_data(), batch_size=3, dtype=dtype)


def _vit_objective(dtype: torch.dtype) -> Objective:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.ViTConfig(
        image_size=4, patch_size=2, num_channels=1, hidden_size=4, num_hidden_layers=1,
        num_attention_heads=2, intermediate_size=8, num_labels=3,
    )  # fmt: skip
    model = transformers.ViTForImageClassification(config).eval()
    g = torch.Generator().manual_seed(5)
    data = {
        "pixel_values": torch.randn(5, 1, 4, 4, generator=g),
        "labels": torch.randint(0, 3, (5,), generator=g),
    }
    return Objective(model, data, batch_size=3, dtype=dtype)


CASES = [
    pytest.param(_gpt2_objective, id="hf-gpt2-sdpa"),
    pytest.param(_vit_objective, id="hf-vit-sdpa"),
    pytest.param(_encoder_objective, id="nn-encoder"),
]


def _dense(obj: Objective) -> torch.Tensor:
    names, params = obj.param_names, [p.detach() for p in obj.params]
    shapes, sizes = [p.shape for p in params], [p.numel() for p in params]
    batches = list(obj.batches())

    def f(flat: torch.Tensor) -> torch.Tensor:
        d = {n: c.view(s) for n, c, s in zip(names, torch.split(flat, sizes), shapes)}
        return sum(w * obj.functional_batch_loss(d, x, y) for x, y, w in batches)

    with sdpa_kernel(SDPBackend.MATH):
        H = torch.autograd.functional.hessian(f, torch.cat([p.reshape(-1) for p in params]))
    return (H + H.T) / 2


def _raw_double_backward(obj: Objective) -> None:
    """A Hessian-vector product on PyTorch's default kernel, the way every product was formed before."""
    x, y, _ = next(iter(obj.batches()))
    grads = torch.autograd.grad(obj.batch_loss(x, y), obj.params, create_graph=True)
    torch.autograd.grad(grads, obj.params, grad_outputs=[torch.ones_like(g) for g in grads])


@pytest.mark.parametrize("make", CASES)
def test_the_default_kernel_has_no_double_backward(make) -> None:
    """What the operator works around (so the tests below would fail without the switch)."""
    with pytest.raises(RuntimeError, match="derivative for .*scaled_dot_product.* is not implemented"):
        _raw_double_backward(make(torch.float32))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("make", CASES)
def test_products_equal_the_dense_hessian_in_float64(make, mode: str) -> None:
    obj = make(torch.float64)
    H = _dense(obj)
    op = HessianOperator(obj, mode=mode, block_size=2)
    V = torch.randn(op.shape[0], 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    torch.testing.assert_close(op @ V, H @ V, rtol=1e-9, atol=1e-12)
    assert op.attention_backend == "math" and op.info["attention_backend"] == "math"
    assert op.info["hvp_fallback_op"] is None  # exact, not finite differences


@pytest.mark.parametrize("make", CASES)
def test_float32_products_run_and_agree_with_float64(make) -> None:
    obj32, obj64 = make(torch.float32), make(torch.float64)
    v = torch.randn(obj64.num_params, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    want = HessianOperator(obj64) @ v
    got = HessianOperator(obj32) @ v.float()
    assert float((got.double() - want).norm() / want.norm()) < 1e-4


class _KernelSpy(nn.Module):
    """Records, at every forward, whether the fast (flash) attention kernel may be chosen."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = _EncoderClassifier()
        self.flash_allowed: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.flash_allowed.append(torch.backends.cuda.flash_sdp_enabled())
        return self.inner(x)


def test_math_kernel_only_inside_products() -> None:
    torch.manual_seed(0)
    spy = _KernelSpy().double()
    x, y = torch.randn(4, 5, 4, dtype=torch.float64), torch.randint(0, 3, (4,))
    obj = Objective(spy, (x, y), dtype=torch.float64)
    op = HessianOperator(obj)
    spy.flash_allowed.clear()
    op @ torch.ones(op.shape[0], dtype=torch.float64)
    assert spy.flash_allowed == [False]
    obj.evaluate()
    obj.gradient()
    assert spy.flash_allowed == [False, True, True]
    assert torch.backends.cuda.flash_sdp_enabled()
