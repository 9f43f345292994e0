"""The central-difference Hessian-vector product, for ops without a double backward and for memory.

``H v ~ (g(w + h v) - g(w - h v)) / (2 h)`` with ``g`` the full-data gradient. Its error is
``O(h^2 ||d^3 L||)`` (truncation) plus ``O(eps ||g|| / h)`` (rounding of the two gradients), balanced by
``h ~ eps^(1/3)``; scaled to the vector,

    h = eps^(1/3) / ||v||,

with ``eps`` the machine epsilon of the parameters' dtype, so the step moves the weights by
``eps^(1/3)`` in norm (6.1e-6 in float64, 4.9e-3 in float32), whatever their own norm. Scaling the step
by ``max(1, ||w||)`` as well was measured too large on transformers, whose third derivatives are large:
on a trained 2-layer GPT-2 (||w|| = 21) it stepped 0.103 in float32 and the top eigenvalue came out 18%
low; on a random-init one (||w|| = 13) the product's float32 error was 1.9e-3 against 6.7e-5 with this
rule, on a tanh MLP (||w|| = 2.7) 2.7e-5 against 5.0e-5 (``benchmarks/RESULTS.md``). A central
difference needs a point where the model is twice differentiable: at a ReLU or max-pool kink (an
untrained batch-norm CNN on images with zero background) the quotient is wrong. It needs the
memory of a gradient, not of a double-backward graph, and two gradient passes per vector. The weights
are copied before and written back after (also on an error), so they are restored bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from landscape.errors import LandscapeError

STEP_RULE = "h = eps^(1/3) / ||v||"


class SecondOrderError(LandscapeError):
    """A curvature product cannot run: an op of the model has no derivative of the order it needs."""


class FiniteDifferenceWarning(UserWarning):
    """The exact product failed on an op without a double backward; finite differences are used."""


def step_size(w_norm: float, v_norm: float, dtype: torch.dtype) -> float:
    """The difference step ``h`` of :data:`STEP_RULE` (see the module docstring)."""
    del w_norm  # the step does not grow with the weights (see the module docstring)
    return torch.finfo(dtype).eps ** (1.0 / 3.0) / v_norm


def finite_difference_products(
    params: Sequence[torch.Tensor],
    gradient: Callable[[], torch.Tensor],
    V: torch.Tensor,
    unflatten: Callable[[torch.Tensor], list[torch.Tensor]],
) -> torch.Tensor:
    """``H V`` column by column by central differences of ``gradient`` around ``params``.

    Args:
        params: the parameters, perturbed in place and restored exactly.
        gradient: the flat gradient at the current value of ``params``.
        V: ``(n, k)`` vectors.
        unflatten: a flat vector to parameter-shaped tensors.

    Returns:
        ``(n, k)`` products; a zero column gives a zero product.
    """
    saved = [p.detach().clone() for p in params]
    w_norm = float(torch.sqrt(sum(s.double().pow(2).sum() for s in saved)))
    out = torch.zeros_like(V)
    try:
        for j in range(V.shape[1]):
            v_norm = float(V[:, j].double().norm())
            if v_norm == 0.0:
                continue
            h = step_size(w_norm, v_norm, V.dtype)
            moves = unflatten(V[:, j])
            grads = []
            for sign in (1.0, -1.0):
                with torch.no_grad():
                    for p, s, d in zip(params, saved, moves):
                        p.copy_(s + (sign * h) * d)
                grads.append(gradient())
            out[:, j] = (grads[0] - grads[1]) / (2.0 * h)
    finally:
        with torch.no_grad():
            for p, s in zip(params, saved):
                p.copy_(s)
    return out
