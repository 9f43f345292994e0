"""The PyHessian 0.1 backend of ``sharpness``: the same quantities through PyHessian, to check against it.

PyHessian finds eigenvalues by power iteration (largest magnitude, with a relative-change stopping
rule) and the trace by Hutchinson; its per-batch protocol (top-5 of each batch Hessian) is the one the
empirical SAM study used. Its ``density()`` calls the removed ``torch.eig``, and it has no per-layer
routine, so those stages always run in this package (``sharpness`` says so in ``notes``).
"""

from __future__ import annotations

import contextlib
import importlib
import math
import time
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch

from landscape.analysis.options import SharpnessOptions
from landscape.analysis.result import SpectrumStages
from landscape.errors import ConfigError
from landscape.hessian.krylov import wanted_order
from landscape.hessian.operator import HessianOperator
from landscape.hessian.per_batch import per_batch_summary
from landscape.hessian.results import EigenResult, PerBatchResult, TraceResult
from landscape.objective.core import Objective
from landscape.progress import track

Batch = tuple[torch.Tensor, torch.Tensor]
# PyHessian's defaults: maxIter of its eigenvalues(); maxIter and tol of the per-batch protocol
DEFAULT_MAX_ITER = 100
PER_BATCH_MAX_ITER = 100
PER_BATCH_TOL = 1e-3
PER_BATCH_TOP_N = 5


def pyhessian_spectrum(
    objective: Objective, options: SharpnessOptions, *, quiet: bool = True
) -> SpectrumStages:
    """Eigenvalues, trace and per-batch protocol of ``objective`` through PyHessian 0.1.

    Args:
        objective: the loss over fixed data (batch norm in eval mode, one process, every parameter).
        options: the settings; ``max_matvecs`` is PyHessian's ``maxIter`` per eigenvalue (default 100),
            ``tol`` its relative-change tolerance.
        quiet: no progress bar.

    Returns:
        :class:`SpectrumStages` with ``which='LM'`` eigenvalues (residuals unknown: NaN).

    Raises:
        ConfigError: PyHessian not installed, or an objective it cannot handle.
    """
    _check_objective(objective)
    notes = ["eigenvalues: PyHessian power iteration (largest magnitude, relative-change stopping rule)"]
    if options.which != "LA":
        notes.append(f"which={options.which!r}: power iteration finds the largest-magnitude eigenvalues")
    # checks the data like the landscape backend (PyHessian itself does not)
    HessianOperator(objective, mode=options.mode, allow_nondeterministic=options.allow_nondeterministic)
    batches = [(x, y) for x, y, _ in objective.batches()]
    max_iter = options.max_matvecs if options.max_matvecs is not None else DEFAULT_MAX_ITER
    torch.manual_seed(options.seed)
    with _default_dtype(objective.dtype):
        h, module = _pyhessian(objective, batches)
        t0 = time.perf_counter()
        with _counting(h, module) as count:
            values, _ = h.eigenvalues(maxIter=max_iter, tol=options.tol, top_n=options.top_k)
            eig_matvecs = count[0]
            seconds = time.perf_counter() - t0
            tr = _trace(h, count, options, notes) if options.wants_trace else None
        _clear_grads(objective)
        del h
        pb = None
        if options.per_batch is not None:
            pb = _per_batch(objective, batches[: options.per_batch], quiet=quiet)
    vals = np.asarray(values, dtype=float)
    order = wanted_order(vals, "LM")
    eigen = EigenResult(
        eigenvalues=vals[order],
        residuals=np.full(len(vals), float("nan")),
        converged=[True] * len(vals),
        matvecs=eig_matvecs,
        which="LM",
        tol=float(options.tol),
        method="power",
        seconds=seconds,
    )
    return SpectrumStages(eigen=eigen, hvp_mode="rev-rev", trace=tr, per_batch=pb, notes=notes)


def _check_objective(objective: Objective) -> None:
    if objective.bn_mode != "eval":
        raise ConfigError("backend='pyhessian' always puts the model in eval mode; use bn_mode='eval'")
    if objective.shard is not None and objective.shard[1] > 1:
        raise ConfigError("backend='pyhessian' runs on one process; run it without torchrun")
    n_model = sum(p.numel() for p in objective.model.parameters() if p.requires_grad)
    if n_model != objective.num_params:
        raise ConfigError("backend='pyhessian' differentiates every trainable parameter; drop param_names")
    first = next(iter(objective.batches()), None)
    if first is not None and isinstance(first[0], Mapping):
        raise ConfigError(
            "backend='pyhessian' calls model(x) on a tensor and cannot take dict inputs (Hugging Face "
            "batches); use backend='landscape'"
        )
    if objective.token_level:
        raise ConfigError(
            "backend='pyhessian' weighs batches by sequences, not by counted tokens, so its token-level "
            "Hessian depends on the batch size; use backend='landscape'"
        )


def _trace(h: Any, count: list[int], options: SharpnessOptions, notes: list[str]) -> TraceResult:
    """PyHessian's Hutchinson trace (its only estimator), with our standard error."""
    if options.trace_method != "hutchinson":
        notes.append("trace: PyHessian offers Hutchinson only")
    t1 = time.perf_counter()
    before = count[0]
    rtol = options.trace_rtol
    vhv = np.asarray(
        h.trace(maxIter=options.trace_max_matvecs if rtol else options.trace_matvecs, tol=rtol or 0.0)
    )
    m = len(vhv)
    return TraceResult(
        estimate=float(vhv.mean()),
        stderr=float(vhv.std(ddof=1)) / math.sqrt(m) if m > 1 else float("inf"),
        matvecs=count[0] - before,
        method="hutchinson",
        samples=m,
        rtol=rtol,
        converged=True,
        seconds=time.perf_counter() - t1,
    )


def _per_batch(objective: Objective, batches: list[Batch], *, quiet: bool) -> PerBatchResult:
    """The per-batch protocol as PyHessian runs it: top-5 by power iteration of each batch Hessian."""
    t1 = time.perf_counter()
    rows, matvecs, size = [], 0, 0
    for x, y in track(batches, "per-batch eigenvalues (PyHessian)", quiet=quiet):
        hb, module = _pyhessian(objective, [(x, y)])
        with _counting(hb, module) as count:
            vals, _ = hb.eigenvalues(maxIter=PER_BATCH_MAX_ITER, tol=PER_BATCH_TOL, top_n=PER_BATCH_TOP_N)
        matvecs += count[0]
        size = max(size, len(y))
        rows.append(np.sort(np.asarray(vals))[::-1])
        _clear_grads(objective)
    return per_batch_summary(np.vstack(rows), "LM", size, matvecs, time.perf_counter() - t1)


@contextlib.contextmanager
def _counting(h: Any, module: Any) -> Iterator[list[int]]:
    """Count PyHessian's Hessian-vector products (single batch and loader paths)."""
    count = [0]
    orig_module = module.hessian_vector_product
    orig_loader = h.dataloader_hv_product

    def single(*a: Any, **kw: Any) -> Any:
        count[0] += 1
        return orig_module(*a, **kw)

    def loader(*a: Any, **kw: Any) -> Any:
        count[0] += 1
        return orig_loader(*a, **kw)

    module.hessian_vector_product = single
    h.dataloader_hv_product = loader
    try:
        yield count
    finally:
        module.hessian_vector_product = orig_module
        del h.dataloader_hv_product


def _pyhessian(objective: Objective, batches: list[Batch]) -> tuple[Any, Any]:
    try:
        # the package re-exports the class under the module's name: fetch the module itself
        ph_module = importlib.import_module("pyhessian.hessian")
    except ImportError as exc:
        raise ConfigError(
            "backend='pyhessian' needs the PyHessian package: pip install 'landscape-geometry[pyhessian]'"
        ) from exc
    cuda = objective.device.type == "cuda"
    if len(batches) == 1:
        h = ph_module.hessian(objective.model, objective.loss_fn, data=batches[0], cuda=cuda)
    else:
        h = ph_module.hessian(objective.model, objective.loss_fn, dataloader=batches, cuda=cuda)
    return h, ph_module


def _clear_grads(objective: Objective) -> None:
    for p in objective.model.parameters():
        p.grad = None


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """PyHessian draws its vectors in the default dtype: match the model's for float64 runs."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with warnings.catch_warnings():
            # PyHessian calls backward(create_graph=True); we release the .grad fields afterwards
            warnings.filterwarnings("ignore", message="Using backward\\(\\) with create_graph=True")
            yield
    finally:
        torch.set_default_dtype(old)
