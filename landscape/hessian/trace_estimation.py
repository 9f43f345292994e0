"""Stochastic trace estimation by name: one dispatcher over the estimators, one module each.

* ``'hutchinson'``: :func:`~landscape.hessian.trace_hutchinson.hutchinson` (Hutchinson 1989).
* ``'hutch++'``: :func:`~landscape.hessian.trace_hutchpp.hutchpp` (Meyer et al. 2021).
* ``'xtrace'``: :func:`~landscape.hessian.trace_xtrace.xtrace` (Epperly, Tropp & Webber 2024; fixed budget).

Every estimate reports its standard error and the number of products (see
:mod:`landscape.hessian.trace_common`).
"""

from __future__ import annotations

from typing import Any

from landscape.errors import ConfigError, check_choice
from landscape.hessian.results import TraceResult
from landscape.hessian.trace_common import MIN_MATVECS
from landscape.hessian.trace_hutchinson import hutchinson
from landscape.hessian.trace_hutchpp import hutchpp
from landscape.hessian.trace_xtrace import xtrace

TRACE_METHODS = ("hutchinson", "hutch++", "xtrace")

__all__ = ["MIN_MATVECS", "TRACE_METHODS", "trace"]


def trace(
    op: Any,
    *,
    method: str = "hutch++",
    matvecs: int = 99,
    rtol: float | None = None,
    max_matvecs: int = 10_000,
    seed: int = 0,
    block_size: int = 8,
    quiet: bool = True,
) -> TraceResult:
    """Stochastic estimate of ``tr(op)`` by ``method`` (``'hutchinson'``, ``'hutch++'`` or ``'xtrace'``).

    See :func:`hutchinson`, :func:`hutchpp` and :func:`xtrace` for the arguments.

    Returns:
        :class:`TraceResult` with the estimate, its standard error, and the products used.

    Raises:
        ConfigError: an unknown ``method``, ``rtol`` with ``'xtrace'``, or a bad budget.
    """
    check_choice("method", method, TRACE_METHODS)
    if method == "xtrace":
        if rtol is not None:
            raise ConfigError(
                "rtol is not available with method='xtrace' (a fixed budget); use method='hutch++'"
            )
        return xtrace(op, matvecs=matvecs, seed=seed, block_size=block_size, quiet=quiet)
    estimator = hutchpp if method == "hutch++" else hutchinson
    return estimator(
        op,
        matvecs=matvecs,
        rtol=rtol,
        max_matvecs=max_matvecs,
        seed=seed,
        block_size=block_size,
        quiet=quiet,
    )
