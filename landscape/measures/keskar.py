"""Keskar et al. 2017 epsilon-sharpness ("On large-batch training ...", Metric 2.1) with ``A = I``.

    phi = 100 (max_{z in C} L(w + z) - L(w)) / (1 + L(w)),   C = {|z_i| <= eps (|w_i| + 1)}

over the whole sample. Keskar et al. solve the box-constrained maximization with L-BFGS-B; we use
the same projected ascent as ``worst`` (APGD step control, linf ball in the scaled coordinates
``u = z / (|w| + 1)``), which is feasible at every iterate.
"""

from __future__ import annotations

from landscape.measures.common import MeasureResult, MeasureRun, Perturbation, group_loss
from landscape.measures.options import KESKAR_EPS, MeasureOptions
from landscape.measures.worst import ascend_group
from landscape.objective.core import Objective


def keskar_sharpness(objective: Objective, options: MeasureOptions | None = None) -> MeasureResult:
    """Keskar et al.'s epsilon-sharpness in the box ``|z_i| <= eps (|w_i| + 1)``.

    Args:
        objective: the loss over a fixed sample.
        options: ``eps`` (default 1e-3), ``steps``, ``restarts``, ``seed``.

    Returns:
        :class:`MeasureResult` ``'keskar'`` (a percentage); ``details`` has the base loss, the
        largest loss found, ``stalled`` and ``max_constraint`` (``max_i |z_i| / (eps (|w_i| + 1))``).
    """
    run = MeasureRun.start(objective, options)
    opts, cost = run.options, run.cost
    eps = KESKAR_EPS if opts.eps is None else opts.eps
    full = list(objective.batches())
    with Perturbation(objective) as pert:
        base = group_loss(objective, full, cost)
        scale = pert.flat_base.abs() + 1
        gain, u, stalled, evaluations = ascend_group(
            objective,
            full,
            pert,
            scale,
            radius=eps,
            norm="linf",
            steps=opts.steps,
            restarts=opts.restarts,
            generator=run.generator,
            cost=cost,
        )
    return run.result(
        "keskar",
        100.0 * gain / (1.0 + base),
        None,
        settings={"eps": eps, "steps": opts.steps, "restarts": opts.restarts},
        seed=opts.seed,
        details={
            "base_loss": base,
            "max_loss": base + gain,
            "stalled": stalled,
            "max_constraint": float(u.abs().max()) / eps,
            "loss_evaluations": evaluations,
        },
    )
