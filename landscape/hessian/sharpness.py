"""Sharpness of a trained network, as ``landscape sharpness`` reports it.

Full-data ``lambda_max`` and the top-``k`` eigenvalues (Lanczos), optionally the trace (Hutch++ or
Hutchinson, fixed budget or target relative standard error), the spectral density (SLQ), per-layer
curvature, and the per-batch protocol of the empirical SAM study (Andriushchenko et al. 2023, *A modern
look at the relationship between sharpness and generalization*; the protocol from PyHessian: top-5
eigenvalues of each of the first ``B`` batch Hessians; the mean of the positive values, the max and the
percentage of negative values). Power iteration, which that protocol used, converges to the
*largest-magnitude* eigenvalues, so the per-batch protocol uses ``which='LM'`` by default.

``backend='pyhessian'`` runs the same quantities through PyHessian 0.1 (when installed) so results can
be checked against it; its ``density()`` calls the removed ``torch.eig``, so the density (and the
per-layer table, which PyHessian does not offer) is always computed by this package, and the result
says so in ``notes``.
"""

from __future__ import annotations

import contextlib
import importlib
import itertools
import math
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from landscape.errors import ConfigError, check_choice, check_positive
from landscape.hessian.lanczos import WHICH, lanczos, wanted_order
from landscape.hessian.operator import HessianOperator
from landscape.hessian.per_layer import GROUP_BY, per_layer
from landscape.hessian.results import (
    DensityResult,
    EigenResult,
    PerBatchResult,
    PerLayerResult,
    SavedResult,
    TraceResult,
)
from landscape.hessian.slq import slq
from landscape.hessian.stages import StageCache
from landscape.hessian.trace import MIN_MATVECS, TRACE_METHODS, trace
from landscape.objective import Objective
from landscape.progress import track

BACKENDS = ("landscape", "pyhessian")


@dataclass
class SharpnessResult(SavedResult):
    """Everything ``landscape sharpness`` reports (the ``sharpness.json`` contract).

    ``eigenvalues`` are listed most-wanted first: ``which='LA'`` descending, ``'SA'`` ascending (the
    most negative first), ``'LM'`` by decreasing magnitude (``residuals`` and ``converged`` follow the
    same order). ``matvecs`` is the total number of Hessian-vector products.
    """

    eigenvalues: np.ndarray
    residuals: np.ndarray
    converged: list[bool]
    which: str
    tol: float
    eigen_matvecs: int
    matvecs: int
    samples: int
    num_params: int
    seed: int
    device: str
    dtype: str
    bn_mode: str
    backend: str
    hvp_mode: str
    seconds: float
    trace: TraceResult | None = None
    density: DensityResult | None = None
    per_layer: PerLayerResult | None = None
    per_batch: PerBatchResult | None = None
    notes: list[str] = field(default_factory=list)

    _array_fields: ClassVar[tuple[str, ...]] = ("eigenvalues", "residuals")
    _nested: ClassVar[dict[str, type[SavedResult]]] = {
        "trace": TraceResult,
        "density": DensityResult,
        "per_layer": PerLayerResult,
        "per_batch": PerBatchResult,
    }

    @property
    def lambda_max(self) -> float:
        """The largest eigenvalue found (the top one only when ``which`` is ``'LA'`` or ``'LM'``)."""
        return float(np.max(self.eigenvalues))


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
    quiet: bool = True,
) -> PerBatchResult:
    """Top-``k`` eigenvalues of each of the first ``batches`` batch Hessians (batch-mean loss).

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
        op = HessianOperator(objective, mode=mode, batches=[(x, y, 1.0)], check_determinism=False)
        res = lanczos(op, min(k, op.shape[0]), which=which, tol=tol, max_matvecs=max_matvecs, seed=seed)
        rows.append(np.sort(res.eigenvalues)[::-1])
        matvecs += res.matvecs
        size = max(size, len(y))
    return _per_batch_summary(np.vstack(rows), which, size, matvecs, time.perf_counter() - t0)


def _per_batch_summary(ev: np.ndarray, which: str, size: int, matvecs: int, seconds: float) -> PerBatchResult:
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


def sharpness(
    objective: Objective,
    *,
    top_k: int = 5,
    which: str = "LA",
    tol: float = 1e-6,
    max_matvecs: int | None = None,
    with_trace: bool = False,
    trace_method: str = "hutch++",
    trace_matvecs: int = 99,
    trace_rtol: float | None = None,
    trace_max_matvecs: int = 3000,
    density: bool = False,
    density_runs: int = 4,
    density_steps: int = 40,
    per_layer_by: str | None = None,
    per_batch: int | None = None,
    per_batch_which: str = "LM",
    backend: str = "landscape",
    mode: str = "auto",
    seed: int = 0,
    allow_nondeterministic: bool = False,
    cache_graphs: bool = False,
    resume_dir: str | Path | None = None,
    quiet: bool = True,
) -> SharpnessResult:
    """Top eigenvalues and, on request, trace, density, per-layer and per-batch curvature.

    Args:
        objective: the loss over a fixed, non-augmented set of examples (batch norm in eval mode by
            default). Sharded objectives (``torch.distributed``) all-reduce every product.
        top_k: number of eigenvalues.
        which: ``'LA'``, ``'SA'`` or ``'LM'`` (Lanczos; PyHessian's power iteration is always ``LM``).
        tol: Lanczos relative Ritz residual tolerance (PyHessian: its relative-change tolerance).
        max_matvecs: Lanczos budget (PyHessian: ``maxIter`` per eigenvalue, default 100).
        with_trace: estimate ``tr(H)``.
        trace_method: ``'hutch++'`` or ``'hutchinson'``.
        trace_matvecs: products of a fixed-budget trace (sketch size with ``trace_rtol``).
        trace_rtol: stop the trace at this relative standard error (up to ``trace_max_matvecs``).
        trace_max_matvecs: trace budget in ``trace_rtol`` mode.
        density: add the SLQ spectral density (``density_runs`` runs of ``density_steps`` steps).
        density_runs: SLQ runs.
        density_steps: Lanczos steps per SLQ run.
        per_layer_by: ``'param'`` or ``'module'`` to add per-layer top eigenvalue and trace.
        per_batch: run the per-batch protocol on the first ``per_batch`` batches.
        per_batch_which: ``which`` of the per-batch protocol (``'LM'``: what power iteration finds).
        backend: ``'landscape'`` or ``'pyhessian'``.
        mode: HVP mode ``'auto'|'rev-rev'|'fwd-rev'``.
        seed: seed of every random draw.
        allow_nondeterministic: skip the determinism check of loader data.
        cache_graphs: keep every batch's gradient graph between products (rev-rev; faster when
            the activations of the whole sample fit in memory).
        resume_dir: keep each finished stage here and reuse the stages whose weights, data and
            settings match (see :mod:`landscape.hessian.stages`); ``None``: no resume.
        quiet: no progress bars.

    Returns:
        :class:`SharpnessResult`.

    Raises:
        ConfigError: a bad option, or PyHessian asked for but not installed or not applicable.
        NonDeterministicDataError: the data changes between passes.
    """
    t0 = time.perf_counter()
    check_choice("which", which, WHICH)
    check_choice("backend", backend, BACKENDS)
    check_choice("trace_method", trace_method, TRACE_METHODS)
    check_positive("top_k", top_k)
    check_positive("tol", tol)
    if per_layer_by is not None:
        check_choice("per_layer", per_layer_by, GROUP_BY)
    if trace_rtol is not None:
        check_positive("trace_rtol", trace_rtol)
        with_trace = True
    _check_budgets(
        objective,
        top_k=top_k,
        which=which,
        max_matvecs=max_matvecs,
        with_trace=with_trace,
        trace_method=trace_method,
        trace_matvecs=trace_matvecs,
        trace_rtol=trace_rtol,
        density=density,
        density_runs=density_runs,
        density_steps=density_steps,
        per_batch=per_batch,
        backend=backend,
    )
    check_finite(objective)
    if backend == "pyhessian":
        return _pyhessian_sharpness(
            **{k: v for k, v in locals().items() if k not in ("backend", "cache_graphs", "resume_dir")}
        )
    op = HessianOperator(
        objective, mode=mode, allow_nondeterministic=allow_nondeterministic, cache_graphs=cache_graphs
    )
    stages = (
        StageCache.for_objective(resume_dir, objective, hvp_mode=op.mode, seed=seed)
        if resume_dir is not None
        else None
    )

    def stage(name: str, options: dict[str, Any], cls: type[Any], compute: Callable[[], Any]) -> Any:
        return stages.run(name, options, cls, compute) if stages is not None else compute()

    eig = stage(
        "eigen",
        {"top_k": top_k, "which": which, "tol": tol, "max_matvecs": max_matvecs},
        EigenResult,
        # the eigenvectors are not part of the sharpness result: drop them rather than store n x k floats
        lambda: replace(
            lanczos(op, top_k, which=which, tol=tol, max_matvecs=max_matvecs, seed=seed, quiet=quiet),
            vectors=None,
        ),
    )
    order = wanted_order(eig.eigenvalues, which)
    tr = None
    if with_trace:
        trace_options = {
            "method": trace_method,
            "matvecs": trace_matvecs,
            "rtol": trace_rtol,
            "max_matvecs": trace_max_matvecs,
        }
        tr = stage(
            "trace",
            trace_options,
            TraceResult,
            lambda: trace(op, **trace_options, seed=seed, quiet=quiet),
        )
    dens = None
    if density:
        dens = stage(
            "density",
            {"runs": density_runs, "steps": density_steps},
            DensityResult,
            lambda: slq(op, runs=density_runs, steps=density_steps, seed=seed, quiet=quiet),
        )
    layers = None
    if per_layer_by is not None:
        layers = stage(
            "per_layer",
            {"group_by": per_layer_by},
            PerLayerResult,
            lambda: per_layer(
                objective,
                group_by=per_layer_by,
                seed=seed,
                mode=mode,
                quiet=quiet,
                allow_nondeterministic=True,
            ),
        )
    pb = None
    if per_batch is not None:
        pb = stage(
            "per_batch",
            {"batches": per_batch, "which": per_batch_which},
            PerBatchResult,
            lambda: per_batch_protocol(
                objective, per_batch, which=per_batch_which, seed=seed, mode=mode, quiet=quiet
            ),
        )
    # every product of every stage, whether computed now or read back from an interrupted run
    total = sum(r.matvecs for r in (eig, tr, dens, layers, pb) if r is not None)
    notes = (
        [f"stages read back from an interrupted run: {', '.join(stages.reused)}"]
        if stages and stages.reused
        else []
    )
    meta = objective.metadata()
    return SharpnessResult(
        eigenvalues=eig.eigenvalues[order],
        residuals=eig.residuals[order],
        converged=[eig.converged[i] for i in order],
        which=which,
        tol=float(tol),
        eigen_matvecs=eig.matvecs,
        matvecs=total,
        samples=meta["num_samples"],
        num_params=meta["num_params"],
        seed=seed,
        device=meta["device"],
        dtype=meta["dtype"],
        bn_mode=meta["bn_mode"],
        backend=backend,
        hvp_mode=op.mode,
        seconds=time.perf_counter() - t0,
        trace=tr,
        density=dens,
        per_layer=layers,
        per_batch=pb,
        notes=notes,
    )


def _check_budgets(
    objective: Objective,
    *,
    top_k: int,
    which: str,
    max_matvecs: int | None,
    with_trace: bool,
    trace_method: str,
    trace_matvecs: int,
    trace_rtol: float | None,
    density: bool,
    density_runs: int,
    density_steps: int,
    per_batch: int | None,
    backend: str,
) -> None:
    """Refuse impossible option combinations before any product is spent, naming the parameter."""
    n = objective.num_params
    if top_k > n:
        raise ConfigError(f"top_k={top_k!r} is more than the {n} parameters of the model; use top_k <= {n}")
    if max_matvecs is not None and max_matvecs < top_k:
        raise ConfigError(f"max_matvecs={max_matvecs!r} must be at least top_k={top_k}")
    if with_trace:
        need = MIN_MATVECS[trace_method]
        if trace_matvecs < need:
            raise ConfigError(
                f"trace_matvecs={trace_matvecs!r} is too small for trace_method={trace_method!r}; "
                f"it needs at least {need}"
            )
        if trace_method == "xtrace" and trace_rtol is not None:
            raise ConfigError(
                "trace_rtol is not available with trace_method='xtrace' (a fixed budget); "
                "use trace_method='hutch++' or 'hutchinson'"
            )
    if density:
        check_positive("density_runs", density_runs)
        check_positive("density_steps", density_steps)
    if per_batch is not None:
        check_positive("per_batch", per_batch)
    if backend == "pyhessian" and which == "SA":
        raise ConfigError(
            "which='SA' is not available with backend='pyhessian' (power iteration finds the "
            "largest-magnitude eigenvalues); use backend='landscape' or which='LM'"
        )


def check_finite(objective: Objective) -> None:
    """Refuse non-finite weights or a non-finite loss: the Hessian is undefined there.

    Raises:
        ConfigError: naming the first parameter or buffer that holds NaN or Inf, or the loss value.
    """
    for name, t in objective.model.state_dict().items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            raise ConfigError(
                f"the model's tensor {name!r} holds {bad} of {t.numel()} values that are NaN or Inf; "
                "the Hessian is undefined there: use a checkpoint with finite weights"
            )
    loss = objective.loss()
    if not math.isfinite(loss):
        raise ConfigError(
            f"the loss at these weights is {loss} (not finite); the Hessian is undefined there: check "
            "the data (labels, NaN inputs) and the checkpoint"
        )


# -- PyHessian backend ---------------------------------------------------------------------------
@contextlib.contextmanager
def _counting_pyhessian(h: Any, module: Any) -> Iterator[list[int]]:
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


def _pyhessian(objective: Objective, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[Any, Any]:
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


def _pyhessian_sharpness(
    *,
    objective: Objective,
    top_k: int,
    which: str,
    tol: float,
    max_matvecs: int | None,
    with_trace: bool,
    trace_method: str,
    trace_matvecs: int,
    trace_rtol: float | None,
    trace_max_matvecs: int,
    density: bool,
    density_runs: int,
    density_steps: int,
    per_layer_by: str | None,
    per_batch: int | None,
    per_batch_which: str,
    mode: str,
    seed: int,
    allow_nondeterministic: bool,
    quiet: bool,
    t0: float,
) -> SharpnessResult:
    """The same quantities through PyHessian 0.1 (power iteration, Hutchinson)."""
    notes = ["eigenvalues: PyHessian power iteration (largest magnitude, relative-change stopping rule)"]
    if objective.bn_mode != "eval":
        raise ConfigError("backend='pyhessian' always puts the model in eval mode; use bn_mode='eval'")
    if objective.shard is not None and objective.shard[1] > 1:
        raise ConfigError("backend='pyhessian' runs on one process; run it without torchrun")
    n_model = sum(p.numel() for p in objective.model.parameters() if p.requires_grad)
    if n_model != objective.num_params:
        raise ConfigError("backend='pyhessian' differentiates every trainable parameter; drop param_names")
    if which != "LA":
        notes.append(f"which={which!r}: power iteration finds the largest-magnitude eigenvalues")
    # checks the data like the landscape backend (PyHessian itself does not)
    HessianOperator(objective, mode=mode, allow_nondeterministic=allow_nondeterministic)
    batches = [(x, y) for x, y, _ in objective.batches()]
    max_iter = max_matvecs if max_matvecs is not None else 100
    torch.manual_seed(seed)
    with _default_dtype(objective.dtype):
        h, module = _pyhessian(objective, batches)
        pyhessian_results = _run_pyhessian(
            objective,
            h,
            module,
            batches,
            top_k,
            max_iter,
            tol,
            with_trace,
            trace_method,
            trace_matvecs,
            trace_rtol,
            trace_max_matvecs,
            per_batch,
            notes,
            quiet,
        )
    values, eig_matvecs, tr, pb, total = pyhessian_results
    _clear_grads(objective)
    del h
    dens = None
    layers = None
    if density or per_layer_by is not None:
        op = HessianOperator(objective, mode=mode, allow_nondeterministic=True)
        if density:
            notes.append("density: landscape SLQ (PyHessian 0.1 density() calls the removed torch.eig)")
            dens = slq(op, runs=density_runs, steps=density_steps, seed=seed, quiet=quiet)
            total += dens.matvecs
        if per_layer_by is not None:
            notes.append("per-layer: landscape (PyHessian has no per-layer routine)")
            layers = per_layer(
                objective, group_by=per_layer_by, seed=seed, quiet=quiet, allow_nondeterministic=True
            )
            total += layers.matvecs
    vals = np.asarray(values, dtype=float)
    order = wanted_order(vals, "LM")
    meta = objective.metadata()
    return SharpnessResult(
        eigenvalues=vals[order],
        residuals=np.full(len(vals), float("nan")),
        converged=[True] * len(vals),
        which="LM",
        tol=float(tol),
        eigen_matvecs=eig_matvecs,
        matvecs=total + (pb.matvecs if pb else 0),
        samples=meta["num_samples"],
        num_params=meta["num_params"],
        seed=seed,
        device=meta["device"],
        dtype=meta["dtype"],
        bn_mode=meta["bn_mode"],
        backend="pyhessian",
        hvp_mode="rev-rev",
        seconds=time.perf_counter() - t0,
        trace=tr,
        density=dens,
        per_layer=layers,
        per_batch=pb,
        notes=notes,
    )


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


def _run_pyhessian(
    objective: Objective,
    h: Any,
    module: Any,
    batches: list[tuple[torch.Tensor, torch.Tensor]],
    top_k: int,
    max_iter: int,
    tol: float,
    with_trace: bool,
    trace_method: str,
    trace_matvecs: int,
    trace_rtol: float | None,
    trace_max_matvecs: int,
    per_batch: int | None,
    notes: list[str],
    quiet: bool,
) -> tuple[list[float], int, TraceResult | None, PerBatchResult | None, int]:
    with _counting_pyhessian(h, module) as count:
        values, _ = h.eigenvalues(maxIter=max_iter, tol=tol, top_n=top_k)
        eig_matvecs = count[0]
        tr = None
        if with_trace:
            if trace_method != "hutchinson":
                notes.append("trace: PyHessian offers Hutchinson only")
            t1 = time.perf_counter()
            before = count[0]
            vhv = np.asarray(
                h.trace(maxIter=trace_max_matvecs if trace_rtol else trace_matvecs, tol=trace_rtol or 0.0)
            )
            m = len(vhv)
            tr = TraceResult(
                estimate=float(vhv.mean()),
                stderr=float(vhv.std(ddof=1)) / math.sqrt(m) if m > 1 else float("inf"),
                matvecs=count[0] - before,
                method="hutchinson",
                samples=m,
                rtol=trace_rtol,
                converged=True,
                seconds=time.perf_counter() - t1,
            )
        total = count[0]  # the per-batch products are counted on their own
        pb = None
        if per_batch is not None:
            t1 = time.perf_counter()
            rows, pb_count, size = [], 0, 0
            for x, y in track(batches[:per_batch], "per-batch eigenvalues (PyHessian)", quiet=quiet):
                hb, mod = _pyhessian(objective, [(x, y)])
                with _counting_pyhessian(hb, mod) as c:
                    vals, _ = hb.eigenvalues(maxIter=100, tol=1e-3, top_n=5)
                pb_count += c[0]
                size = max(size, len(y))
                rows.append(np.sort(np.asarray(vals))[::-1])
                _clear_grads(objective)
            pb = _per_batch_summary(np.vstack(rows), "LM", size, pb_count, time.perf_counter() - t1)
    return values, eig_matvecs, tr, pb, total
