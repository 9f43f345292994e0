"""Average-case (adaptive) sharpness (Andriushchenko et al. 2023; Kwon et al. 2021 for the scale).

    S_avg = E_{delta ~ N(0, rho^2 diag(c^2))} [L(w + delta) - L(w)],   c = |w| (adaptive) or 1,

by Monte Carlo with antithetic pairs: each draw ``delta`` is evaluated at ``+delta`` and ``-delta``
and contributes ``(L(w + delta) + L(w - delta)) / 2 - L(w)``. The odd terms of the Taylor expansion
cancel within a pair, so the gradient term adds no variance; on a quadratic ``1/2 delta^T H delta``
each pair is exactly ``1/2 delta^T H delta`` (mean ``rho^2 tr(C H C) / 2``). The standard error is
the sample standard deviation of the pair values over ``sqrt(pairs)``.
"""

from __future__ import annotations

from landscape.measures.common import MeasureResult, MeasureRun, Perturbation, group_loss, mean_and_stderr
from landscape.measures.options import MeasureOptions
from landscape.measures.worst import perturbation_scale
from landscape.objective.core import Objective


def average_sharpness(objective: Objective, options: MeasureOptions | None = None) -> MeasureResult:
    """Average-case (adaptive) sharpness over the whole sample with antithetic Gaussian pairs.

    Args:
        objective: the loss over a fixed sample.
        options: ``rho``, ``adaptive``, ``mc_samples`` (antithetic pairs), ``seed``.

    Returns:
        :class:`MeasureResult` ``'average'`` with the Monte Carlo standard error.
    """
    run = MeasureRun.start(objective, options)
    opts, cost = run.options, run.cost
    full = list(objective.batches())
    pairs: list[float] = []
    with Perturbation(objective) as pert:
        scale = perturbation_scale(pert, opts.adaptive)
        base = group_loss(objective, full, cost)
        for _ in range(opts.mc_samples):
            delta = opts.rho * scale * pert.randn(run.generator)
            pert.set(delta)
            plus = group_loss(objective, full, cost)
            pert.set(-delta)
            minus = group_loss(objective, full, cost)
            pairs.append(0.5 * (plus + minus) - base)
    value, stderr = mean_and_stderr(pairs)
    return run.result(
        "average",
        value,
        stderr,
        settings={"rho": opts.rho, "adaptive": opts.adaptive, "mc_samples": opts.mc_samples},
        seed=opts.seed,
        details={"base_loss": base, "antithetic_pairs": opts.mc_samples},
    )
