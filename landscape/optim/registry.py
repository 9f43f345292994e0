"""The optimizers of the toolkit by name: one :class:`~landscape.optim.entry.OptimizerEntry` each.

``make_optimizer``, ``resolve_options``, ``OPTIMIZER_NAMES``, ``landscape train --optimizer``, the
sweep and :func:`~landscape.hessian.precond.is_adaptive` read this table. Adding an optimizer is its
module (the class, and a builder if its constructor is not ``(params, lr, momentum, weight_decay,
rho, ...)``-shaped) plus one entry below; :func:`register_optimizer` adds one at run time.
"""

from __future__ import annotations

from functools import partial

import torch

from landscape.errors import ConfigError, check_choice
from landscape.optim.entry import OptimizerEntry
from landscape.optim.minmin import MinMinOptimizer, build_minmin
from landscape.optim.msam import MSAM, AdamWMSAMScheduleFree
from landscape.optim.newton import NewtonSummary
from landscape.optim.newton_training import (
    NEWTON_SUMMARY_DEFAULTS,
    build_newton_summary,
    newton_run_arguments,
)
from landscape.optim.sam import SAM, SAMDirection, SAMMagnitude, build_sam_family
from landscape.optim.sgd_hess import SGDHess

_ENTRIES = (
    OptimizerEntry("sgd", torch.optim.SGD, record_class_defaults=False),
    OptimizerEntry("adam", torch.optim.Adam, record_class_defaults=False, adaptive=True),
    OptimizerEntry("adamw", torch.optim.AdamW, record_class_defaults=False, adaptive=True),
    OptimizerEntry("sam", SAM, default_rho=0.05, build=partial(build_sam_family, adaptive=False)),
    OptimizerEntry("asam", SAM, default_rho=0.5, build=partial(build_sam_family, adaptive=True)),
    OptimizerEntry("sam-direction", SAMDirection, default_rho=0.05, build=build_sam_family),
    OptimizerEntry("sam-magnitude", SAMMagnitude, default_rho=0.05, build=build_sam_family),
    # the Rademacher probes come from the run's seed, so config.json alone reproduces a run
    OptimizerEntry("sgd-hess", SGDHess, default_rho=0.05, run_seed_option="seed"),
    OptimizerEntry("minmin", MinMinOptimizer, default_rho=0.1, build=build_minmin),
    OptimizerEntry("msam", MSAM, default_rho=0.3),
    OptimizerEntry("adamw-msam-sf", AdamWMSAMScheduleFree, default_rho=0.05, adaptive=True),
    OptimizerEntry(
        "newton-summary",
        NewtonSummary,
        defaults={"partition": "canonical", **NEWTON_SUMMARY_DEFAULTS},
        extra_options=("partition",),
        run_arguments=newton_run_arguments,
        build=build_newton_summary,
    ),
)

#: name -> entry, in the order the command line lists them.
OPTIMIZERS: dict[str, OptimizerEntry] = {entry.name: entry for entry in _ENTRIES}


def optimizer_names() -> tuple[str, ...]:
    """The registered names, in order (read at call time, so later registrations count)."""
    return tuple(OPTIMIZERS)


def optimizer_entry(name: str) -> OptimizerEntry:
    """The entry of ``name``.

    Raises:
        ConfigError: ``name`` is not registered (the message lists the names).
    """
    check_choice("optimizer", name, optimizer_names())
    return OPTIMIZERS[name]


def register_optimizer(entry: OptimizerEntry) -> None:
    """Add ``entry`` to the registry (a user's own optimizer, available by its name from then on).

    Raises:
        ConfigError: the name is taken.
    """
    if entry.name in OPTIMIZERS:
        raise ConfigError(f"optimizer name {entry.name!r} is taken; register it under another name")
    OPTIMIZERS[entry.name] = entry


def adaptive_classes() -> tuple[type, ...]:
    """The classes of the Adam-type entries (their state holds ``exp_avg_sq``)."""
    return tuple(dict.fromkeys(entry.cls for entry in OPTIMIZERS.values() if entry.adaptive))
