"""Sharpness of a trained network, as ``landscape sharpness`` reports it.

Full-data ``lambda_max`` and the top-``k`` eigenvalues (Lanczos, or block Lanczos with ``eigen_block``), optionally the trace (Hutch++,
Hutchinson or XTrace; fixed budget or target relative standard error), the spectral density (SLQ),
per-layer curvature, per-block spectra with their Jensen-Shannon distances
(:mod:`landscape.hessian.blocks`), the per-batch protocol of the empirical SAM study
(:mod:`landscape.hessian.per_batch`) and the sharpness measures beyond the spectrum
(:mod:`landscape.measures`: worst/average-case, Keskar, PAC-Bayes, Fisher-Rao, ...).

``backend='pyhessian'`` runs the eigenvalues, trace and per-batch protocol through PyHessian 0.1
(:mod:`landscape.analysis.pyhessian_backend`); the density, per-layer table and measures always run
in this package. With ``resume_dir`` each finished stage is kept and reused
(:mod:`landscape.analysis.stages`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from landscape import measures as measures_package
from landscape.analysis.options import SharpnessOptions
from landscape.analysis.pyhessian_backend import pyhessian_spectrum
from landscape.analysis.result import SharpnessResult, SpectrumStages
from landscape.analysis.stages import StageCache
from landscape.errors import ConfigError
from landscape.hessian.block_krylov import block_lanczos
from landscape.hessian.blocks import BlockSpectra, block_spectra
from landscape.hessian.krylov import lanczos
from landscape.hessian.layer_blocks import per_layer
from landscape.hessian.operator import HessianOperator
from landscape.hessian.per_batch import per_batch_protocol
from landscape.hessian.results import DensityResult, EigenResult, PerBatchResult, PerLayerResult, TraceResult
from landscape.hessian.spectral_density import slq
from landscape.hessian.trace_estimation import trace
from landscape.measures.common import MeasureResult
from landscape.measures.registry import get_measure
from landscape.objective.core import Objective

Stage = Callable[[str, dict[str, Any], type, Callable[[], Any]], Any]


def sharpness(
    objective: Objective,
    options: SharpnessOptions | None = None,
    *,
    resume_dir: str | Path | None = None,
    quiet: bool = True,
    **overrides: Any,
) -> SharpnessResult:
    """Top eigenvalues and, on request, trace, density, per-layer, per-batch curvature and measures.

    Call it with an options object, with keywords, or both (keywords win)::

        sharpness(obj, top_k=3, with_trace=True)
        sharpness(obj, SharpnessOptions(top_k=3), density=True)

    Args:
        objective: the loss over a fixed, non-augmented set of examples (batch norm in eval mode by
            default). Sharded objectives (``torch.distributed``) all-reduce every product.
        options: every setting (:class:`SharpnessOptions`, whose attributes document them);
            ``None``: the defaults.
        resume_dir: keep each finished stage here and reuse the stages whose weights, data and
            settings match (see :mod:`landscape.analysis.stages`); ``None``: no resume. The PyHessian
            backend's own stages are not kept.
        quiet: no progress bars.
        **overrides: fields of :class:`SharpnessOptions` (``top_k=3``, ``which='SA'``, ...).

    Returns:
        :class:`SharpnessResult`.

    Raises:
        ConfigError: a bad option, or PyHessian asked for but not installed or not applicable.
        NonDeterministicDataError: the data changes between passes.
    """
    t0 = time.perf_counter()
    opts = (options or SharpnessOptions()).with_overrides(**overrides)
    opts.validate(objective.num_params)
    saturated = check_finite(objective)
    cache = None
    if opts.backend == "pyhessian":
        spectrum = pyhessian_spectrum(objective, opts, quiet=quiet)
    else:
        op = HessianOperator(
            objective,
            mode=opts.mode,
            allow_nondeterministic=opts.allow_nondeterministic,
            cache_graphs=opts.cache_graphs,
            # a block of eigen_block products is one data pass (the operator's default holds 16)
            block_size=max(16, opts.eigen_block_size or 1),
            hvp=opts.hvp,
        )
        if resume_dir is not None:
            # hvp keys the stages only when not the default, so stages kept before it existed still match
            product = {} if opts.hvp == "exact" else {"hvp": opts.hvp}
            cache = StageCache.for_objective(
                resume_dir, objective, hvp_mode=op.mode, seed=opts.seed, **product
            )
        spectrum = _landscape_spectrum(op, objective, opts, _stage_runner(cache), quiet=quiet)
        spectrum.operator = op
    result = _finish(objective, opts, spectrum, _stage_runner(cache), cache, t0, quiet=quiet)
    result.degenerate = degenerate_reason(
        result.eigenvalues,
        saturated,
        eps=torch.finfo(objective.dtype).eps,
        trace=result.trace.estimate if result.trace is not None else None,
        num_params=result.num_params,
    )
    return result


def _stage_runner(cache: StageCache | None) -> Stage:
    def stage(name: str, options: dict[str, Any], cls: type, compute: Callable[[], Any]) -> Any:
        return cache.run(name, options, cls, compute) if cache is not None else compute()

    return stage


def _landscape_spectrum(
    op: HessianOperator, objective: Objective, opts: SharpnessOptions, stage: Stage, *, quiet: bool
) -> SpectrumStages:
    """Eigenpairs (Lanczos) and trace computed by this package."""
    computed: list[EigenResult] = []
    block = opts.eigen_block_size

    def eigen() -> EigenResult:
        kwargs = {"which": opts.which, "tol": opts.tol, "max_matvecs": opts.max_matvecs, "seed": opts.seed}
        if block is None:
            res = lanczos(op, opts.top_k, **kwargs, quiet=quiet)
        else:
            res = block_lanczos(op, opts.top_k, block_size=block, **kwargs, quiet=quiet)
        computed.append(res)
        # the stored stage drops the eigenvectors rather than keep n x k floats on disk
        return replace(res, vectors=None)

    eigen_options: dict[str, Any] = {
        "top_k": opts.top_k,
        "which": opts.which,
        "tol": opts.tol,
        "max_matvecs": opts.max_matvecs,
    }
    if block is not None:  # absent for single-vector Lanczos, so stages kept before still match
        eigen_options["eigen_block"] = block
    eig = stage("eigen", eigen_options, EigenResult, eigen)
    if computed:  # computed now, not read back: the vectors are at hand (for the overlap measure)
        eig = replace(eig, vectors=computed[0].vectors)
    tr = None
    if opts.wants_trace:
        trace_options = {
            "method": opts.trace_method,
            "matvecs": opts.trace_matvecs,
            "rtol": opts.trace_rtol,
            "max_matvecs": opts.trace_max_matvecs,
        }
        tr = stage(
            "trace",
            trace_options,
            TraceResult,
            lambda: trace(op, **trace_options, seed=opts.seed, quiet=quiet),
        )
    notes = [] if block is None else [f"eigenvalues: block Lanczos, blocks of {block} ({eig.passes} passes)"]
    return SpectrumStages(eigen=eig, hvp_mode=op.mode, trace=tr, notes=notes)


def _finish(
    objective: Objective,
    opts: SharpnessOptions,
    spectrum: SpectrumStages,
    stage: Stage,
    cache: StageCache | None,
    t0: float,
    *,
    quiet: bool,
) -> SharpnessResult:
    """The stages both backends share (density, per layer, per batch, measures), then the result."""
    notes = list(spectrum.notes)
    dens, layers = _density_and_layers(objective, opts, spectrum, stage, notes, quiet=quiet)
    pb = spectrum.per_batch
    if opts.per_batch is not None and pb is None:
        pb = _per_batch(objective, opts, spectrum, stage, quiet=quiet)
    blocks = None
    if opts.blocks is not None:
        blocks = _blocks(objective, opts, spectrum, stage, quiet=quiet)
        if opts.backend == "pyhessian":
            notes.append("per-block spectra: landscape (PyHessian has no block routine)")
    measures = _measures(objective, opts, spectrum.eigen, stage) if opts.measures else None
    eig, tr = spectrum.eigen, spectrum.trace
    # every product of every stage, whether computed now or read back from an interrupted run
    total = sum(r.matvecs for r in (eig, tr, dens, layers, pb, blocks) if r is not None)
    if cache is not None and cache.reused:
        notes.insert(0, f"stages read back from an interrupted run: {', '.join(cache.reused)}")
    meta = objective.metadata()
    return SharpnessResult(
        eigenvalues=eig.eigenvalues,
        residuals=eig.residuals,
        converged=list(eig.converged),
        which=eig.which,
        tol=float(opts.tol),
        eigen_matvecs=eig.matvecs,
        matvecs=total,
        samples=meta["num_samples"],
        num_params=meta["num_params"],
        seed=opts.seed,
        device=meta["device"],
        dtype=meta["dtype"],
        bn_mode=meta["bn_mode"],
        backend=opts.backend,
        hvp_mode=spectrum.hvp_mode,
        seconds=time.perf_counter() - t0,
        hvp_info=spectrum.operator.info if spectrum.operator is not None else None,
        trace=tr,
        density=dens,
        per_layer=layers,
        per_batch=pb,
        blocks=blocks,
        measures=measures,
        notes=notes,
    )


def _density_and_layers(
    objective: Objective,
    opts: SharpnessOptions,
    spectrum: SpectrumStages,
    stage: Stage,
    notes: list[str],
    *,
    quiet: bool,
) -> tuple[DensityResult | None, PerLayerResult | None]:
    """The SLQ density and the per-layer table (this package's, whatever the backend)."""
    by_pyhessian = opts.backend == "pyhessian"
    dens = layers = None
    if opts.density:
        if by_pyhessian:
            notes.append("density: landscape SLQ (PyHessian 0.1 density() calls the removed torch.eig)")
        # the backend's operator when it has one (data already checked), else a new one
        op = spectrum.operator
        if op is None:
            op = HessianOperator(objective, mode=opts.mode, allow_nondeterministic=True, hvp=opts.hvp)
        dens = stage(
            "density",
            {"runs": opts.density_runs, "steps": opts.density_steps},
            DensityResult,
            lambda: slq(op, runs=opts.density_runs, steps=opts.density_steps, seed=opts.seed, quiet=quiet),
        )
    if opts.per_layer_by is not None:
        if by_pyhessian:
            notes.append("per-layer: landscape (PyHessian has no per-layer routine)")
        layers = stage(
            "per_layer",
            {"group_by": opts.per_layer_by},
            PerLayerResult,
            lambda: per_layer(
                objective,
                group_by=opts.per_layer_by,
                seed=opts.seed,
                mode=opts.mode,
                hvp=_product(opts, spectrum),
                quiet=quiet,
                allow_nondeterministic=True,
            ),
        )
    return dens, layers


def _product(opts: SharpnessOptions, spectrum: SpectrumStages) -> str:
    """The product the later stages use: the backend operator's once it ran (an exact product that
    fell back to finite differences stays there, without a warning per stage), else ``opts.hvp``."""
    op = spectrum.operator
    return op.hvp_method if op is not None else opts.hvp


def _per_batch(
    objective: Objective, opts: SharpnessOptions, spectrum: SpectrumStages, stage: Stage, *, quiet: bool
) -> PerBatchResult:
    """The per-batch protocol (this package's)."""
    return stage(
        "per_batch",
        {"batches": opts.per_batch, "which": opts.per_batch_which},
        PerBatchResult,
        lambda: per_batch_protocol(
            objective,
            opts.per_batch,
            which=opts.per_batch_which,
            seed=opts.seed,
            mode=opts.mode,
            hvp=_product(opts, spectrum),
            quiet=quiet,
        ),
    )


def _blocks(
    objective: Objective, opts: SharpnessOptions, spectrum: SpectrumStages, stage: Stage, *, quiet: bool
) -> BlockSpectra:
    """Per-block top-k and densities (``top_k`` and the density settings) and their JS distances."""
    selection = opts.blocks if isinstance(opts.blocks, str) else list(opts.blocks or ())
    return stage(
        "blocks",
        {
            "blocks": selection,
            "top_k": opts.top_k,
            "which": opts.which,
            "tol": opts.tol,
            "max_matvecs": opts.max_matvecs,
            "runs": opts.density_runs,
            "steps": opts.density_steps,
        },
        BlockSpectra,
        lambda: block_spectra(
            objective,
            selection,
            top_k=opts.top_k,
            which=opts.which,
            tol=opts.tol,
            max_matvecs=opts.max_matvecs,
            runs=opts.density_runs,
            steps=opts.density_steps,
            seed=opts.seed,
            mode=opts.mode,
            hvp=_product(opts, spectrum),
            quiet=quiet,
        ),
    )


def _measures(objective: Objective, opts: SharpnessOptions, eig: EigenResult, stage: Stage) -> dict[str, Any]:
    """Each measure as its own stage, keyed by the options it reads; a measure that takes top
    eigenvectors (``overlap``) reuses the ones Lanczos just found when they are the ``k`` largest
    (``which='LA'``, ``top_k >= k``)."""
    settings = opts.measure_settings
    out: dict[str, Any] = {}
    for name in opts.measures:
        key = opts.measure_stage_options(name)
        vectors = _reusable_vectors(eig, name, key["options"])
        out[name] = stage(
            f"measure-{name}",
            key,
            MeasureResult,
            # through the package, so that a caller's stand-in for compute_measures is the one called
            lambda name=name, vectors=vectors: measures_package.compute_measures(
                objective, [name], settings, eigenvectors=vectors
            )[name],
        )
    return out


def _reusable_vectors(eig: EigenResult, name: str, own: dict[str, Any]) -> torch.Tensor | None:
    """The top eigenvectors measure ``name`` (with its options ``own``) can take from the eigen stage."""
    count = get_measure(name).top_eigenvectors
    if count is None or eig.vectors is None or eig.which != "LA" or eig.vectors.shape[1] < own[count]:
        return None
    return eig.vectors[:, : own[count]]


def check_finite(objective: Objective) -> SaturationPass:
    """Refuse non-finite weights or a non-finite loss: the Hessian is undefined there.

    Returns:
        the loss and how saturated the softmax is, from the same pass (:func:`saturation_pass`).

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
    saturated = saturation_pass(objective)
    loss = saturated.loss
    if not math.isfinite(loss):
        raise ConfigError(
            f"the loss at these weights is {loss} (not finite); the Hessian is undefined there: check "
            "the data (labels, NaN inputs) and the checkpoint"
        )
    return saturated


# a top class probability this close to 1 is saturated: the softmax has no curvature left there
SATURATION_GAP = 1e-6
# the share of saturated examples above which the spectrum reads as saturation, not flatness
SATURATED_SHARE = 0.99


@dataclass
class SaturationPass:
    """One pass over the objective's data: the mean loss and the share of saturated examples.

    Attributes:
        loss: the mean loss (as :meth:`Objective.loss`).
        saturated: the share of predictions (examples, or tokens) whose top softmax probability is
            within :data:`SATURATION_GAP` of 1; ``None`` for outputs that are not class logits.
    """

    loss: float
    saturated: float | None


def saturation_pass(objective: Objective) -> SaturationPass:
    """The mean loss and the share of saturated predictions in one pass (all-reduced when sharded)."""
    sums = torch.zeros(3, dtype=torch.float64, device=objective.device)  # weighted loss, saturated, rows
    classified = True
    with torch.no_grad(), objective.model_mode():
        for x, y, w in objective.batches():
            out = objective.outputs(x)
            sums[0] += w * objective.loss_fn(out, y).double()
            logits = out if isinstance(out, torch.Tensor) else None
            if logits is None or logits.ndim < 2 or logits.shape[-1] < 2 or y.is_floating_point():
                classified = False
                continue
            top = torch.softmax(logits.double().reshape(-1, logits.shape[-1]), dim=-1).amax(dim=-1)
            sums[1] += (top >= 1 - SATURATION_GAP).sum()
            sums[2] += top.numel()
    objective.reduce_([sums])
    share = float(sums[1] / sums[2]) if classified and float(sums[2]) > 0 else None
    return SaturationPass(loss=float(sums[0]), saturated=share)


def degenerate_reason(
    eigenvalues: Any,
    saturated: SaturationPass,
    *,
    eps: float,
    trace: float | None = None,
    num_params: int = 1,
) -> str | None:
    """Why the curvature says nothing about flatness, or ``None``.

    Two cases: every eigenvalue found (and the trace, when estimated) is zero up to
    ``eps * max(|loss|, 1)`` (the trace: times ``num_params``), or the softmax is saturated on at
    least :data:`SATURATED_SHARE` of the predictions. Both are what a diverged run looks like: the
    loss is piecewise linear in the weights there, not at a flat minimum.

    Args:
        eigenvalues: the eigenvalues found.
        saturated: the loss and saturation of the same weights (:func:`saturation_pass`).
        eps: the machine epsilon of the dtype the curvature was computed in.
        trace: the trace estimate, if any.
        num_params: the parameter count (the trace sums that many eigenvalues).
    """
    tiny = eps * max(abs(saturated.loss), 1.0)
    values = np.asarray(eigenvalues, dtype=float)
    zero_trace = trace is None or abs(trace) <= tiny * num_params
    if values.size and float(np.max(np.abs(values))) <= tiny and zero_trace:
        return (
            f"all-zero spectrum: every eigenvalue is within {tiny:.3g} of 0 at loss {saturated.loss:.4g}; "
            "this is not a flat minimum (did training diverge?)"
        )
    if saturated.saturated is not None and saturated.saturated >= SATURATED_SHARE:
        return (
            f"saturated softmax: {saturated.saturated:.1%} of predictions have a top probability within "
            f"{SATURATION_GAP:g} of 1 at loss {saturated.loss:.4g}; the curvature vanishes there, which is "
            "not flatness (did training diverge?)"
        )
    return None
