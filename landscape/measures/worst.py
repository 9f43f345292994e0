"""Worst-case (adaptive) m-sharpness (Foret et al. 2021; Kwon et al. 2021; Andriushchenko et al. 2023).

    S_max = mean over batches B of  max_{||delta / c||_p <= rho}  L_B(w + delta) - L_B(w)

with ``c = |w|`` when adaptive (ASAM's scale-invariant version) and ``c = 1`` otherwise, ``p`` in
{2, inf}. Substituting ``delta = c * u`` turns the constraint into the ball ``||u||_p <= rho`` and the
gradient into ``c * grad L(w + c u)``; the ascent is :func:`~landscape.measures.ascent.apgd_ascent`
from random feasible starts. Coordinates with ``c_i = 0`` cannot move and start at 0. The maximum is
at least 0 (``delta = 0`` is feasible), so a batch whose ascent found no gain reports 0.
"""

from __future__ import annotations

import torch

from landscape.measures.ascent import apgd_ascent, random_start
from landscape.measures.common import (
    Cost,
    MeasureResult,
    MeasureRun,
    Perturbation,
    WeightedBatch,
    batch_groups,
    group_loss,
    group_loss_and_grad,
    mean_and_stderr,
)
from landscape.measures.options import MeasureOptions
from landscape.objective.core import Objective


def perturbation_scale(pert: Perturbation, adaptive: bool) -> torch.Tensor:
    """``c``: ``|w|`` (adaptive) or ones, flat."""
    return pert.flat_base.abs() if adaptive else torch.ones_like(pert.flat_base)


def ascend_group(
    objective: Objective,
    group: list[WeightedBatch],
    pert: Perturbation,
    scale: torch.Tensor,
    *,
    radius: float,
    norm: str,
    steps: int,
    restarts: int,
    generator: torch.Generator,
    cost: Cost,
) -> tuple[float, torch.Tensor, bool, int]:
    """Best gain ``L_B(w + c u) - L_B(w)`` over ``restarts`` ascents on one group of batches.

    Returns:
        ``(gain, u, stalled, evaluations)``: the best gain (>= 0: ``u = 0`` is feasible), its point
        in the scaled coordinates, whether the winning ascent stalled, and the loss evaluations.
    """
    pert.restore()
    base = group_loss(objective, group, cost)

    def value_and_grad(u: torch.Tensor) -> tuple[float, torch.Tensor]:
        pert.set(scale * u)
        loss, grad = group_loss_and_grad(objective, group, cost, pert)
        return loss - base, scale * grad

    mask = (scale != 0).to(scale.dtype)
    best_gain, best_u, stalled, evaluations = 0.0, torch.zeros_like(scale), True, 1
    for _ in range(restarts):
        start = random_start(pert.num_params, radius, norm, generator=generator, like=scale, mask=mask)
        res = apgd_ascent(value_and_grad, start, radius=radius, norm=norm, steps=steps)
        evaluations += res.evaluations
        if res.value > best_gain:
            best_gain, best_u, stalled = res.value, res.u, res.stalled
    pert.restore()
    return best_gain, best_u, stalled, evaluations


def worst_sharpness(objective: Objective, options: MeasureOptions | None = None) -> MeasureResult:
    """Worst-case (adaptive) m-sharpness by projected gradient ascent with APGD step control.

    Args:
        objective: the loss over a fixed sample (batch norm in eval mode by default).
        options: ``rho``, ``perturb_norm``, ``adaptive``, ``m``, ``steps``, ``restarts``, ``seed``.

    Returns:
        :class:`MeasureResult` ``'worst'``: the mean over batches, its standard error (``None`` with
        one batch), and in ``details`` the per-batch gains, ``stalled`` (some batch's best point came
        before the last checkpoint: more steps at the final step size would not have helped),
        ``stalled_batches`` and ``max_constraint`` (the largest ``||delta / c||_p / rho`` returned,
        <= 1 up to rounding).
    """
    run = MeasureRun.start(objective, options)
    opts, cost = run.options, run.cost
    groups, used = batch_groups(objective, opts.m)
    gains: list[float] = []
    stalled: list[bool] = []
    evaluations = 0
    max_constraint = 0.0
    with Perturbation(objective) as pert:
        scale = perturbation_scale(pert, opts.adaptive)
        for group in groups:
            gain, u, st, ev = ascend_group(
                objective,
                group,
                pert,
                scale,
                radius=opts.rho,
                norm=opts.perturb_norm,
                steps=opts.steps,
                restarts=opts.restarts,
                generator=run.generator,
                cost=cost,
            )
            gains.append(gain)
            stalled.append(st)
            evaluations += ev
            ord_ = 2 if opts.perturb_norm == "l2" else float("inf")
            max_constraint = max(max_constraint, float(torch.linalg.vector_norm(u, ord=ord_)) / opts.rho)
    value, stderr = mean_and_stderr(gains)
    return run.result(
        "worst",
        value,
        stderr,
        settings={
            "rho": opts.rho,
            "perturb_norm": opts.perturb_norm,
            "adaptive": opts.adaptive,
            "m": opts.m,
            "steps": opts.steps,
            "restarts": opts.restarts,
            "num_batches": len(groups),
            "samples_used": used,
        },
        seed=opts.seed,
        details={
            "stalled": any(stalled),
            "stalled_batches": sum(stalled),
            "per_batch": gains,
            "max_constraint": max_constraint,
            "loss_evaluations": evaluations,
        },
    )
