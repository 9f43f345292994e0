"""Scaled-dot-product attention on a kernel that has a double backward, for curvature products.

PyTorch's fast attention kernels (flash and memory-efficient, on the CPU and on CUDA) have a first
but no second derivative: a Hessian-vector product through them raises "derivative for
aten::_scaled_dot_product_flash_attention_for_cpu_backward is not implemented" (pytorch #116350).
The math kernel computes the same attention from matmuls and a softmax, whose derivatives of every
order exist. :func:`second_order_attention` selects it for the block it wraps, and only there: the
products switch it on, forward-only evaluation and gradients keep the fast kernels. Models that do
not call ``scaled_dot_product_attention`` (Hugging Face GPT-2, BERT and ViT in their default "sdpa"
implementation, ``nn.TransformerEncoder`` and ``nn.MultiheadAttention`` do) are unaffected.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from torch.nn.attention import SDPBackend, sdpa_kernel

SECOND_ORDER_ATTENTION = "math"
DEFAULT_ATTENTION = "default"

# the two ways autograd says an op lacks a derivative: a reverse-mode one (double backward of a
# fast kernel) and a forward-mode one (the jvp of a forward-over-reverse product)
_MISSING_DERIVATIVE = (
    re.compile(r"derivative for (\S+) is not implemented"),
    re.compile(r"Trying to use forward AD with (\S+) that does not support it"),
)


@contextmanager
def second_order_attention() -> Iterator[None]:
    """Run ``scaled_dot_product_attention`` on the math kernel inside the block."""
    with sdpa_kernel(SDPBackend.MATH):
        yield


def missing_derivative_op(err: BaseException) -> str | None:
    """The op named by an autograd "derivative ... not implemented" error, else ``None``."""
    text = str(err)
    for pattern in _MISSING_DERIVATIVE:
        found = pattern.search(text)
        if found:
            return found.group(1).rstrip(".,;:")
    return None
