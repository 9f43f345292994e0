"""Dense references for checking Hessian code: what the package's own tests compare against.

Check your own operator (or a new estimator) the way the tests do: build a tiny float64 model, take
its dense Hessian with :func:`dense_hessian`, and compare::

    from landscape.hessian.testing import dense_hessian, digits, make_mlp
    obj = Objective(make_mlp(), digits(64), batch_size=32, dtype=torch.float64)
    H = dense_hessian(obj)                      # (n, n), symmetric
    op = HessianOperator(obj)
    v = torch.randn(op.shape[0], dtype=torch.float64)
    torch.testing.assert_close(op @ v, H @ v)   # the HVP against the dense product
    torch.linalg.eigvalsh(H)                    # the spectrum Lanczos must find

:func:`spectrum_matrix` builds a dense symmetric matrix with a chosen spectrum, the test case of
every algorithm that takes "anything with ``.shape`` and ``@``" (Lanczos, trace estimators, SLQ).
"""

from __future__ import annotations

import torch

from landscape.data.datasets import digits_tensors
from landscape.hessian.attention import second_order_attention
from landscape.models.builders import build_model
from landscape.objective.core import Objective

__all__ = ["dense_hessian", "digits", "make_cnn", "make_mlp", "spectrum_matrix"]


def dense_hessian(obj: Objective) -> torch.Tensor:
    """The dense Hessian of ``obj``'s full-data loss over its flat parameters.

    ``torch.autograd.functional.hessian`` of ``sum_b w_b L_b(theta)`` (the same per-batch weights as the
    objective, so the mean over the whole sample), with attention on its math kernel (the one with a
    double backward), symmetrized as ``(H + H^T) / 2``; its rows are batched reverse-mode products
    (``vectorize=True``). Not ``torch.func.hessian``: its vmapped forward-over-reverse rows come out
    wrong (an asymmetric Hessian, off by 0.2) on the LayerNorm rows of Hugging Face GPT-2. Costs ``n``
    backward passes and ``n^2`` floats: for models of up to a few thousand parameters.

    Args:
        obj: the objective (use float64 for reference values).

    Returns:
        ``(n, n)`` tensor in the order of ``obj.params`` flattened and concatenated (the order of
        :class:`~landscape.hessian.operator.HessianOperator`).
    """
    names = obj.param_names
    shapes = [p.shape for p in obj.params]
    sizes = [p.numel() for p in obj.params]
    full = obj.param_dict()
    flat0 = torch.cat([p.detach().reshape(-1) for p in obj.params])
    batches = list(obj.batches())

    def f(flat: torch.Tensor) -> torch.Tensor:
        d = dict(full)
        d.update({n: c.view(s) for n, c, s in zip(names, torch.split(flat, sizes), shapes)})
        return sum(w * obj.functional_batch_loss(d, x, y) for x, y, w in batches)

    with second_order_attention():
        H = torch.autograd.functional.hessian(f, flat0, vectorize=True)
    return (H + H.T) / 2


def spectrum_matrix(eigenvalues: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """``Q diag(eigenvalues) Q^T`` (float64, symmetric) with a seeded random orthogonal ``Q``.

    Args:
        eigenvalues: the spectrum, shape ``(n,)``.
        seed: seed of ``Q`` (the QR factor of a Gaussian matrix).
    """
    n = eigenvalues.numel()
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    A = Q @ torch.diag(eigenvalues.double()) @ Q.T
    return (A + A.T) / 2


def digits(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` examples of the embedded digits training split, inputs in float64."""
    x, y = digits_tensors("train")
    return x[:n].double(), y[:n]


def make_mlp(seed: int = 0) -> torch.nn.Module:
    """A tiny float64 tanh MLP for the digits (one hidden layer of 8), seeded."""
    torch.manual_seed(seed)
    return build_model("mlp", hidden=(8,), activation="tanh").double()


def make_cnn(seed: int = 0) -> torch.nn.Module:
    """A tiny float64 CNN with batch norm (width 4) whose running statistics and affine parameters are
    non-trivial (drawn from the seed), so eval-mode batch norm is really tested."""
    torch.manual_seed(seed)
    model = build_model("cnn", width=4).double()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return model
