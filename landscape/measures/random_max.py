"""Random-perturbation sharpness of the seed documents' reference, for comparison with it.

    S_rand = max(0, max_{k=1..K} L(w + eps z_k) - L(w)) / eps,   z_k ~ N(0, I) independent,

with ``K = 10`` and ``eps = 0.01`` in the reference (``compute_sharpness``), whose running maximum
starts at the unperturbed loss, hence the outer ``max(0, .)``. It is a crude lower bound on the
worst-case increase in an l2 ball of radius about ``eps sqrt(n)``; prefer ``worst`` or ``average``
for new work. The reference perturbs every parameter; so do we (every differentiated parameter).
"""

from __future__ import annotations

from landscape.measures.common import MeasureResult, MeasureRun, Perturbation, group_loss
from landscape.measures.options import RANDOM_MAX_EPS, MeasureOptions
from landscape.objective.core import Objective


def random_max_sharpness(objective: Objective, options: MeasureOptions | None = None) -> MeasureResult:
    """Largest loss increase over ``K`` Gaussian perturbations of scale ``eps``, divided by ``eps``.

    Args:
        objective: the loss over a fixed sample.
        options: ``eps`` (default 0.01), ``random_max_samples`` (``K``, default 10), ``seed``.

    Returns:
        :class:`MeasureResult` ``'random-max'``. Its ``stderr`` is ``None``: a maximum of ``K`` draws has
        no simple standard error; ``details['increases']`` holds every draw's increase.
    """
    run = MeasureRun.start(objective, options)
    opts, cost = run.options, run.cost
    eps = RANDOM_MAX_EPS if opts.eps is None else opts.eps
    full = list(objective.batches())
    increases: list[float] = []
    with Perturbation(objective) as pert:
        base = group_loss(objective, full, cost)
        for _ in range(opts.random_max_samples):
            pert.set(eps * pert.randn(run.generator))
            increases.append(group_loss(objective, full, cost) - base)
    value = max(0.0, *increases) / eps
    return run.result(
        "random-max",
        value,
        None,
        settings={"eps": eps, "random_max_samples": opts.random_max_samples},
        seed=opts.seed,
        details={"base_loss": base, "increases": increases},
    )
