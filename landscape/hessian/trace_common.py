"""What the stochastic trace estimators share: probing in blocks, the standard error, the checks.

The standard error is the sample standard deviation of the stochastic part's probes over the square
root of their number (a sketch part is exact given its basis). With ``rtol`` the estimators keep
drawing probes (in blocks) until ``stderr <= rtol * |estimate|`` or ``max_matvecs`` is spent.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch

from landscape.errors import ConfigError
from landscape.hessian.operator import rademacher
from landscape.hessian.results import TraceResult
from landscape.progress import Progress

MIN_PROBES = 8
# the fewest products each estimator can work with (Hutch++: sketch, projection and one probe)
MIN_MATVECS = {"hutchinson": 2, "hutch++": 3, "xtrace": 4}


def check_trace_arguments(method: str, matvecs: int, rtol: float | None, block_size: int) -> None:
    """Refuse a budget too small for ``method``, a non-positive ``rtol`` or ``block_size``."""
    if matvecs < MIN_MATVECS[method]:
        raise ConfigError(
            f"matvecs={matvecs!r} is too small for {method} (at least 2; 3 for hutch++, 4 for xtrace)"
        )
    if rtol is not None and not rtol > 0:
        raise ConfigError(f"rtol={rtol!r} must be > 0")
    if block_size < 1:
        raise ConfigError(f"block_size={block_size!r} must be >= 1")


def apply_blocks(op: Any, Z: torch.Tensor, block_size: int) -> torch.Tensor:
    """``op @ Z`` in blocks of ``block_size`` columns (one data pass per block)."""
    return torch.cat([op @ Z[:, j : j + block_size] for j in range(0, Z.shape[1], block_size)], dim=1)


def stderr_of(samples: torch.Tensor) -> float:
    """Sample standard deviation over the square root of the count (``inf`` for one sample)."""
    m = samples.numel()
    return float(samples.std(unbiased=True)) / math.sqrt(m) if m > 1 else float("inf")


def probe_until(
    op: Any,
    n: int,
    *,
    count: int,
    rtol: float | None,
    budget: int,
    offset: float,
    project: Any,
    gen: torch.Generator,
    dtype: torch.dtype,
    device: torch.device,
    block_size: int,
    bar: Progress,
) -> torch.Tensor:
    """Values ``z^T A z`` of (projected) Rademacher probes: ``count`` of them, or until ``rtol``."""
    vals: list[torch.Tensor] = []
    drawn = 0
    while True:
        b = count - drawn if rtol is None else min(block_size, budget - drawn)
        if b <= 0:
            break
        Z = project(rademacher(n, b, generator=gen, dtype=dtype, device=device))
        AZ = apply_blocks(op, Z, block_size)
        vals.append((Z * AZ).sum(dim=0).double().cpu())
        drawn += b
        bar.update(b)
        if rtol is not None and drawn >= MIN_PROBES:
            s = torch.cat(vals)
            est = offset + float(s.mean())
            if stderr_of(s) <= rtol * abs(est):
                break
    return torch.cat(vals) if vals else torch.zeros(0, dtype=torch.float64)


def probe_result(
    method: str, exact: float, vals: torch.Tensor, used: int, rtol: float | None, t0: float
) -> TraceResult:
    """The estimate ``exact + mean(vals)`` with the standard error of the probes."""
    est = exact + (float(vals.mean()) if vals.numel() else 0.0)
    err = 0.0 if vals.numel() == 0 else stderr_of(vals)
    return TraceResult(
        estimate=est,
        stderr=err,
        matvecs=used + vals.numel(),
        method=method,
        samples=int(vals.numel()),
        rtol=rtol,
        converged=True if rtol is None else bool(err <= rtol * abs(est)),
        seconds=time.perf_counter() - t0,
    )
