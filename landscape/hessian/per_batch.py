"""The per-batch protocol of the empirical SAM study (Andriushchenko et al. 2023).

*A modern look at the relationship between sharpness and generalization* reports, after PyHessian, the
top-5 eigenvalues of each of the first ``B`` batch Hessians (batch-mean loss): the mean of the positive
values, the max and the percentage of negative values. Power iteration, which that protocol used,
converges to the *largest-magnitude* eigenvalues, so ``which='LM'`` is the default.
"""

from __future__ import annotations

import itertools
import time

import numpy as np

from landscape.errors import ConfigError, check_positive
from landscape.hessian.krylov import lanczos
from landscape.hessian.operator import HessianOperator
from landscape.hessian.results import PerBatchResult
from landscape.objective.core import Objective
from landscape.progress import track


def per_batch_protocol(
    objective: Objective,
    batches: int,
    *,
    k: int = 5,
    which: str = "LM",
    tol: float = 1e-4,
    max_matvecs: int | None = None,
    seed: int = 0,
    mode: str = "auto",
    hvp: str = "exact",
    quiet: bool = True,
) -> PerBatchResult:
    """Top-``k`` eigenvalues of each of the first ``batches`` batch Hessians (batch-mean loss).

    Args:
        objective: the loss; its batches are taken in order.
        batches: how many of the first batches.
        k: eigenvalues per batch.
        which: ``'LA'``, ``'SA'`` or ``'LM'``.
        tol: Lanczos relative residual tolerance.
        max_matvecs: Lanczos budget per batch.
        seed: seed of the start vectors.
        mode: HVP mode.
        hvp: ``'exact'`` or ``'finite-difference'`` (:class:`~landscape.hessian.operator.HessianOperator`).
        quiet: no progress bar.

    Returns:
        :class:`PerBatchResult`: ``(B, k)`` eigenvalues; mean of the positive values, the max, and
        the percentage of negative values over all ``B k`` of them.
    """
    t0 = time.perf_counter()
    check_positive("per_batch", batches)
    if objective.shard is not None and objective.shard[1] > 1:
        raise ConfigError("the per-batch protocol runs on one process; run it without torchrun")
    rows: list[np.ndarray] = []
    matvecs = 0
    size = 0
    chosen = list(itertools.islice(objective.batches(), batches))
    for x, y, _ in track(chosen, "per-batch eigenvalues", quiet=quiet):
        op = HessianOperator(objective, mode=mode, batches=[(x, y, 1.0)], check_determinism=False, hvp=hvp)
        res = lanczos(op, min(k, op.shape[0]), which=which, tol=tol, max_matvecs=max_matvecs, seed=seed)
        rows.append(np.sort(res.eigenvalues)[::-1])
        matvecs += res.matvecs
        size = max(size, len(y))
    return per_batch_summary(np.vstack(rows), which, size, matvecs, time.perf_counter() - t0)


def per_batch_summary(ev: np.ndarray, which: str, size: int, matvecs: int, seconds: float) -> PerBatchResult:
    """Summarize ``(B, k)`` per-batch eigenvalues: mean of the positive ones, max, % negative."""
    pos = ev[ev > 0]
    return PerBatchResult(
        eigenvalues=ev,
        mean_positive=float(pos.mean()) if pos.size else float("nan"),
        max=float(ev.max()),
        percent_negative=100.0 * float((ev < 0).mean()),
        which=which,
        batches=int(ev.shape[0]),
        batch_size=size,
        matvecs=matvecs,
        seconds=seconds,
    )
