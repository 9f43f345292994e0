"""Worst-case (adaptive) m-sharpness (Foret et al. 2021; Kwon et al. 2021; Andriushchenko et al. 2023).

    S_max = mean over batches B of  max_{||delta / c||_p <= rho}  L_B(w + delta) - L_B(w)

with ``c = |w|`` when adaptive (ASAM's scale-invariant version) and ``c = 1`` otherwise, ``p`` in
{2, inf}. Substituting ``delta = c * u`` turns the constraint into the ball ``||u||_p <= rho`` and the
gradient into ``c * grad L(w + c u)``; the ascent is :func:`~landscape.measures.ascent.apgd_ascent`
from random feasible starts. Coordinates with ``c_i = 0`` cannot move and start at 0. The maximum is
at least 0 (``delta = 0`` is feasible), so a batch whose ascent found no gain reports 0.

The ascent is local: with too few steps or restarts it stops below the maximum. Each restart's own
value is kept (``details['per_restart']``) with their relative spread. Restarts may end in different
local maxima (``+-`` a top eigenvector, other eigenvectors), so a spread alone is no fault; but when
no second restart comes within :data:`RESTART_SPREAD_WARNING` of the best one (``runner_up_gap``),
the best is unconfirmed and a :class:`~landscape.errors.RestartSpreadWarning` says so.
"""

from __future__ import annotations

import warnings

import torch

from landscape.errors import RestartSpreadWarning
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

# the runner-up restart this far (relative) below the best: no two restarts agree on the maximum,
# so the ascents have not converged and the best may be short of it too
RESTART_SPREAD_WARNING = 0.01


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
    restart_gains: list[float] | None = None,
) -> tuple[float, torch.Tensor, bool, int]:
    """Best gain ``L_B(w + c u) - L_B(w)`` over ``restarts`` ascents on one group of batches.

    Args:
        restart_gains: when given, each restart's own gain (>= 0) is appended to it.

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
        if restart_gains is not None:
            restart_gains.append(max(res.value, 0.0))
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
        ``stalled_batches``, ``max_constraint`` (the largest ``||delta / c||_p / rho`` returned,
        <= 1 up to rounding), ``per_restart`` (the value each restart alone gives: its mean gain over
        the batches), ``restart_spread`` (``(max - min) / max`` of those; 0 when all are 0) and
        ``runner_up_gap`` (``(max - second largest) / max``; 0 with one restart).

    Warns:
        RestartSpreadWarning: with ``restarts >= 2``, when ``runner_up_gap`` exceeds
            :data:`RESTART_SPREAD_WARNING`.
    """
    run = MeasureRun.start(objective, options)
    opts, cost = run.options, run.cost
    groups, used = batch_groups(objective, opts.m)
    gains: list[float] = []
    stalled: list[bool] = []
    evaluations = 0
    max_constraint = 0.0
    by_restart: list[list[float]] = []  # per group, each restart's gain
    with Perturbation(objective) as pert:
        scale = perturbation_scale(pert, opts.adaptive)
        for group in groups:
            restart_gains: list[float] = []
            by_restart.append(restart_gains)
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
                restart_gains=restart_gains,
            )
            gains.append(gain)
            stalled.append(st)
            evaluations += ev
            ord_ = 2 if opts.perturb_norm == "l2" else float("inf")
            max_constraint = max(max_constraint, float(torch.linalg.vector_norm(u, ord=ord_)) / opts.rho)
    value, stderr = mean_and_stderr(gains)
    per_restart, spread, gap = restart_values(by_restart)
    if opts.restarts >= 2 and gap > RESTART_SPREAD_WARNING:
        warnings.warn(
            f"worst-case sharpness: the {opts.restarts} restarts disagree (the best two by {gap:.1%}, "
            f"more than {RESTART_SPREAD_WARNING:.0%}; all by {spread:.1%}), so the maximum may be "
            "underestimated; "
            f"raise steps={opts.steps} first, then the number of restarts ({opts.restarts})",
            RestartSpreadWarning,
            stacklevel=2,
        )
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
            "per_restart": per_restart,
            "restart_spread": spread,
            "runner_up_gap": gap,
        },
    )


def restart_values(by_restart: list[list[float]]) -> tuple[list[float], float, float]:
    """Each restart's value (its gain averaged over the groups), their spread and the runner-up's gap.

    Args:
        by_restart: per group of batches, the gain of each restart (same count in every group).

    Returns:
        ``(per_restart, spread, gap)``: ``spread = (max - min) / max``, ``gap = (max - second) / max``
        (both 0 when every value is 0; ``gap`` 0 with one restart).
    """
    if not by_restart:
        return [], 0.0, 0.0
    per_restart = [sum(col) / len(col) for col in zip(*by_restart)]
    ranked = sorted(per_restart, reverse=True)
    top = ranked[0]
    if top <= 0:
        return per_restart, 0.0, 0.0
    gap = (top - ranked[1]) / top if len(ranked) > 1 else 0.0
    return per_restart, (top - ranked[-1]) / top, gap
