"""Projected gradient ascent with APGD step-size control (Croce & Hein 2020) on a norm ball.

Maximizes ``f(u)`` over ``||u||_p <= radius`` (``p`` = 2 or infinity) given ``f`` and its gradient.
Each iteration takes a normalized gradient step (``g / ||g||_2`` for l2, ``sign(g)`` for linf) of
size ``eta`` and projects, then mixes with the previous move (momentum ``alpha = 0.75``):

    z_{k+1} = P(u_k + eta s(g_k))
    u_{k+1} = P(u_k + alpha (z_{k+1} - u_k) + (1 - alpha) (u_k - u_{k-1}))

``eta`` starts at ``2 radius``. At the checkpoints ``p_0 = 0, p_1 = 0.22,
p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)`` (fractions of the iterations) the step halves
and the iterate returns to the best point found when fewer than 75 % of the steps since the last
checkpoint increased ``f``, or when neither the step nor the best value changed since then.

Every iterate is a projection, so ``f`` is only ever evaluated at feasible points; ``u = 0`` (value
0 for a gain ``f(u) = L(w + c u) - L(w)``) is feasible too and can be passed as the floor.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from landscape.errors import ConfigError

MOMENTUM = 0.75
PROGRESS_FRACTION = 0.75

ValueAndGrad = Callable[[torch.Tensor], tuple[float, torch.Tensor]]


@dataclass
class AscentResult:
    """The best feasible point of an ascent.

    Attributes:
        u: the best point (flat).
        value: ``f(u)``.
        evaluations: calls of ``f`` (each a forward and a backward pass).
        best_step: the iteration at which ``u`` was found (0: a start point).
        halvings: step-size reductions.
        stalled: the best value did not change after the last checkpoint (the ascent stopped making
            progress before the step budget ran out: converged to rounding, or stuck on a flat or
            zero-gradient region).
    """

    u: torch.Tensor
    value: float
    evaluations: int
    best_step: int
    halvings: int
    stalled: bool


def project(u: torch.Tensor, radius: float, norm: str) -> torch.Tensor:
    """Euclidean projection onto ``{||u||_p <= radius}``."""
    if norm == "linf":
        return u.clamp(-radius, radius)
    size = float(torch.linalg.vector_norm(u))
    return u * (radius / size) if size > radius else u


def checkpoints(steps: int) -> list[int]:
    """APGD's checkpoint iterations for a budget of ``steps`` iterations."""
    p = [0.0, 0.22]
    while p[-1] < 1:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    # ceil(p_j steps) with p_j rounded first: 0.22 + 0.19 + 0.16 is 0.5700000000000001 in binary
    marks = {math.ceil(round(q * steps, 9)) for q in p[1:]}
    return sorted(k for k in marks if 0 < k < steps)


def _direction(g: torch.Tensor, norm: str) -> torch.Tensor:
    if norm == "linf":
        return torch.sign(g)
    size = float(torch.linalg.vector_norm(g))
    return g / size if size > 0 else torch.zeros_like(g)


def random_start(
    n: int,
    radius: float,
    norm: str,
    *,
    generator: torch.Generator,
    like: torch.Tensor,
    mask: torch.Tensor | None,
) -> torch.Tensor:
    """A random feasible start: uniform in the box (linf) or on the sphere (l2), zero off ``mask``."""
    if norm == "linf":
        u = (2 * torch.rand(n, generator=generator, dtype=torch.float64) - 1) * radius
    else:
        u = torch.randn(n, generator=generator, dtype=torch.float64)
    u = u.to(device=like.device, dtype=like.dtype)
    if mask is not None:
        u = u * mask
    if norm == "l2":
        size = float(torch.linalg.vector_norm(u))
        u = u * (radius / size) if size > 0 else u
    return project(u, radius, norm)


def apgd_ascent(
    value_and_grad: ValueAndGrad,
    start: torch.Tensor,
    *,
    radius: float,
    norm: str,
    steps: int,
) -> AscentResult:
    """Maximize ``f`` over the ``norm`` ball of ``radius`` from ``start`` (projected first).

    Args:
        value_and_grad: ``u -> (f(u), grad f(u))`` on flat tensors.
        start: start point.
        radius: ball radius (> 0).
        norm: ``'l2'`` or ``'linf'``.
        steps: iterations after the start point (``steps + 1`` evaluations of ``f``).

    Returns:
        :class:`AscentResult` with the best feasible point seen.
    """
    if norm not in ("l2", "linf"):
        raise ConfigError(f"perturb_norm={norm!r} is not valid; choose one of 'l2', 'linf'")
    if not radius > 0:
        raise ConfigError(f"rho={radius!r} must be > 0")
    if steps < 1:
        raise ConfigError(f"steps={steps!r} must be an integer >= 1")
    marks = set(checkpoints(steps))
    u = project(start, radius, norm)
    f, g = value_and_grad(u)
    evaluations = 1
    best_u, best_f, best_g, best_step = u, f, g, 0
    u_prev = u
    eta = 2.0 * radius
    halvings = 0
    increases = 0
    last_mark, eta_at_mark, best_at_mark = 0, eta, best_f
    for k in range(1, steps + 1):
        z = project(u + eta * _direction(g, norm), radius, norm)
        alpha = 1.0 if k == 1 else MOMENTUM  # the first step has no previous move
        u_new = project(u + alpha * (z - u) + (1 - alpha) * (u - u_prev), radius, norm)
        f_new, g_new = value_and_grad(u_new)
        evaluations += 1
        if f_new > f:
            increases += 1
        if f_new > best_f:
            best_u, best_f, best_g, best_step = u_new, f_new, g_new, k
        u_prev, u, f, g = u, u_new, f_new, g_new
        if k in marks:
            too_few = increases < PROGRESS_FRACTION * (k - last_mark)
            no_change = eta_at_mark == eta and best_at_mark == best_f
            eta_at_mark, best_at_mark = eta, best_f
            if too_few or no_change:
                eta /= 2.0
                halvings += 1
                u_prev, u, f, g = best_u, best_u, best_f, best_g
            increases, last_mark = 0, k
    final_mark = max(marks) if marks else 0
    return AscentResult(
        u=best_u,
        value=best_f,
        evaluations=evaluations,
        best_step=best_step,
        halvings=halvings,
        stalled=best_step <= final_mark,
    )
