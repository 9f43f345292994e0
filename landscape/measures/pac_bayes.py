"""PAC-Bayesian flatness (Jiang et al. 2019, "Fantastic generalization measures", sections C.3-C.4).

The largest standard deviation ``sigma`` of Gaussian weight noise that changes the training *error*
by at most ``target`` (0.1 in the paper),

    sigma* = max { sigma : E_u [err(w + u)] - err(w) <= target },   u ~ N(0, sigma^2 I),

reported as ``1 / sigma*^2`` (larger: sharper). The magnitude-aware variant uses
``u_i ~ N(0, sigma^2 w_i^2 + eps^2)`` (eps = 1e-3). ``sigma`` is the standard deviation throughout
(a public implementation passes ``sigma^2`` where the standard deviation is expected).

The expectation is a Monte Carlo mean over ``mc_samples`` draws that are the same at every
``sigma`` (common random numbers: draw ``j`` is ``std(sigma) * z_j`` with ``z_j`` from its own seed),
so the estimated deviation is a deterministic function of ``sigma`` and the bisection is well
posed. The search brackets ``sigma*`` by doubling or halving from 1, then bisects geometrically
and returns the lower end (a ``sigma`` whose deviation was verified to be within ``target``).
The standard error follows from the delta method: ``se(sigma) = se(deviation) / slope`` with the
slope of the deviation from two extra evaluations at ``0.8 sigma*`` and ``1.2 sigma*``, and
``se(1 / sigma^2) = 2 se(sigma) / sigma^3``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from landscape.errors import ConfigError
from landscape.measures.common import Cost, MeasureResult, MeasureRun, Perturbation, mean_and_stderr
from landscape.measures.options import MeasureOptions
from landscape.objective.core import Objective

MAX_BRACKET_STEPS = 40


def _error(objective: Objective, cost: Cost) -> float:
    ev = objective.evaluate()
    cost.add(objective.num_samples)
    if math.isnan(ev.accuracy):
        raise ConfigError(
            "the pac-bayes measure needs a classification error: the model must output (batch, classes) "
            "logits and the targets must be integer class labels"
        )
    return 1.0 - ev.accuracy


def pac_bayes_sharpness(objective: Objective, options: MeasureOptions | None = None) -> MeasureResult:
    """``1 / sigma*^2`` of Jiang et al.'s PAC-Bayesian flatness (optionally magnitude-aware).

    Args:
        objective: a classification loss over a fixed sample (the training set in Jiang et al.).
        options: ``pac_bayes_target``, ``pac_bayes_magnitude``, ``pac_bayes_eps``, ``mc_samples``,
            ``bisection_steps``, ``seed``.

    Returns:
        :class:`MeasureResult` ``'pac-bayes'`` (``'pac-bayes-magnitude'`` in ``settings['variant']``
        for the magnitude-aware one); ``details`` has ``sigma``, the deviation there and its standard
        error. ``value`` is 0 when no noise up to ``2^40`` reaches the target (the error never moves)
        and ``inf`` when even the smallest tried noise exceeds it.

    Raises:
        ConfigError: the model is not a classifier (no error rate).
    """
    run = MeasureRun.start(objective, options)
    opts = run.options
    draw_seeds = [int(s) for s in torch.randint(0, 2**62, (opts.mc_samples,), generator=run.generator)]
    target = opts.pac_bayes_target
    with Perturbation(objective) as pert:
        noise = _NoiseDeviation(objective, pert, run.cost, opts, draw_seeds)
        lo, hi, status = _bracket(noise.deviation, target)
        dev, dev_se, slope, stderr = float("nan"), None, float("nan"), None
        value = 0.0 if status == "unbounded" else float("inf")
        if status == "ok":
            lo, hi = _bisect(noise.deviation, lo, hi, target, opts.bisection_steps)
            dev, dev_se = mean_and_stderr(noise.deviations(lo))
            slope = (noise.deviation(1.2 * lo) - noise.deviation(0.8 * lo)) / (0.4 * lo)
            value = 1.0 / lo**2
            if dev_se is not None and slope > 0:
                stderr = 2.0 * (dev_se / slope) / lo**3
    return run.result(
        "pac-bayes",
        value,
        stderr,
        settings={
            "variant": "pac-bayes-magnitude" if opts.pac_bayes_magnitude else "pac-bayes",
            "target": target,
            "magnitude_eps": opts.pac_bayes_eps if opts.pac_bayes_magnitude else None,
            "mc_samples": opts.mc_samples,
            "bisection_steps": opts.bisection_steps,
        },
        seed=opts.seed,
        details={
            "status": status,
            "sigma": lo if status == "ok" else float("nan"),
            "base_error": noise.base_error,
            "deviation": dev,
            "deviation_stderr": dev_se,
            "slope": slope,
            "bracket": [lo, hi],
            "noise_evaluations": noise.evaluations,
        },
    )


class _NoiseDeviation:
    """``E_u[err(w + u)] - err(w)`` as a function of ``sigma``, with the same draws at every ``sigma``
    (draw ``j`` is ``std(sigma) * z_j``, ``z_j`` from ``draw_seeds[j]``). The base error is measured
    on construction."""

    def __init__(
        self,
        objective: Objective,
        pert: Perturbation,
        cost: Cost,
        opts: MeasureOptions,
        draw_seeds: list[int],
    ) -> None:
        self.objective, self.pert, self.cost, self.draw_seeds = objective, pert, cost, draw_seeds
        self.magnitude, self.eps = opts.pac_bayes_magnitude, opts.pac_bayes_eps
        self.evaluations = 0
        self.base_error = _error(objective, cost)
        self.w2 = pert.flat_base.pow(2)

    def std(self, sigma: float) -> torch.Tensor:
        """Per-coordinate standard deviation: ``sigma``, or ``sqrt(sigma^2 w_i^2 + eps^2)``."""
        if self.magnitude:
            return torch.sqrt(sigma**2 * self.w2 + self.eps**2)
        return torch.full_like(self.w2, sigma)

    def deviations(self, sigma: float) -> list[float]:
        """The error change of every draw at ``sigma`` (the weights are restored after)."""
        s = self.std(sigma)
        out = []
        for seed in self.draw_seeds:
            self.pert.set(s * self.pert.randn(torch.Generator().manual_seed(seed)))
            out.append(_error(self.objective, self.cost) - self.base_error)
        self.pert.restore()
        self.evaluations += 1
        return out

    def deviation(self, sigma: float) -> float:
        """The Monte Carlo mean of :meth:`deviations`."""
        return mean_and_stderr(self.deviations(sigma))[0]


def _bracket(deviation: Callable[[float], float], target: float) -> tuple[float, float, str]:
    """``(lo, hi, status)`` with ``deviation(lo) <= target < deviation(hi)``, by doubling or halving
    from 1; ``status`` is ``unbounded`` (no sigma up to ``2^40`` reaches the target), ``no-sigma``
    (even ``2^-40`` exceeds it) or ``ok``."""
    lo, hi = 1.0, 1.0
    if deviation(1.0) <= target:
        hi = 2.0
        while deviation(hi) <= target:
            lo, hi = hi, 2 * hi
            if hi > 2.0**MAX_BRACKET_STEPS:
                return lo, hi, "unbounded"
    else:
        lo = 0.5
        while deviation(lo) > target:
            hi, lo = lo, lo / 2
            if lo < 2.0**-MAX_BRACKET_STEPS:
                return lo, hi, "no-sigma"
    return lo, hi, "ok"


def _bisect(
    deviation: Callable[[float], float], lo: float, hi: float, target: float, steps: int
) -> tuple[float, float]:
    """``steps`` geometric bisections of ``[lo, hi]`` keeping ``deviation(lo) <= target``."""
    for _ in range(steps):
        mid = math.sqrt(lo * hi)
        if deviation(mid) <= target:
            lo = mid
        else:
            hi = mid
    return lo, hi
