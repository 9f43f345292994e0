"""Every setting of ``sharpness`` in one dataclass, shared by the CLI and both backends.

One :class:`SharpnessOptions` travels from the caller (the CLI maps its flags onto these fields) to the
landscape backend, the PyHessian adapter and the stage cache; :meth:`SharpnessOptions.validate` refuses
impossible combinations before any Hessian-vector product is spent, naming the Python parameter.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from landscape.errors import ConfigError, check_choice, check_positive
from landscape.hessian.blocks import check_block_patterns
from landscape.hessian.krylov import WHICH
from landscape.hessian.layer_blocks import GROUP_BY
from landscape.hessian.operator import HVP_METHODS
from landscape.hessian.trace_estimation import MIN_MATVECS, TRACE_METHODS
from landscape.measures.dispatch import parse_measure_names
from landscape.measures.options import MeasureOptions
from landscape.measures.registry import check_measure_options, measure_settings

BACKENDS = ("landscape", "pyhessian")


def auto_eigen_block(top_k: int) -> int | None:
    """The block size ``eigen_block='auto'`` stands for: ``None`` (single-vector Lanczos) for every
    ``top_k``.

    Block Lanczos would pay for ``top_k >= 4`` only if it were faster in seconds. It is not on the
    benchmark (benchmarks/bench_block_lanczos.py, benchmarks/RESULTS.md "Block Lanczos"; top-5 to
    top-20 of a float32 CNN, CPU): 1.15x-3.9x slower, because on reverse-over-reverse products a block
    shares only the first-order pass (a product in a block costs 0.73-0.90 of a single one) while the
    blocks need 1.5x-5.3x the products of single-vector Lanczos, whose Krylov degree grows one per
    product.
    """
    del top_k  # kept so a future measurement (say on CUDA's vmapped products) can pick by k
    return None


@dataclass
class SharpnessOptions:
    """What ``sharpness`` computes and how (every field is a keyword of :func:`sharpness` too).

    Attributes:
        top_k: number of eigenvalues.
        which: ``'LA'``, ``'SA'`` or ``'LM'`` (Lanczos; PyHessian's power iteration is always ``LM``).
        tol: Lanczos relative Ritz residual tolerance (PyHessian: its relative-change tolerance).
        max_matvecs: Lanczos budget (PyHessian: ``maxIter`` per eigenvalue, default 100).
        eigen_block: ``None`` or ``1``: single-vector Lanczos; an integer ``b >= 2``: block Lanczos
            with blocks of ``b`` products, each block one pass over the data
            (:func:`~landscape.hessian.block_krylov.block_lanczos`); ``'auto'``: whichever the block
            Lanczos benchmark found faster in seconds (:func:`auto_eigen_block`).
        with_trace: estimate ``tr(H)`` (implied by ``trace_rtol``).
        trace_method: ``'hutch++'``, ``'hutchinson'`` or ``'xtrace'``.
        trace_matvecs: products of a fixed-budget trace (sketch size with ``trace_rtol``).
        trace_rtol: stop the trace at this relative standard error (up to ``trace_max_matvecs``).
        trace_max_matvecs: trace budget in ``trace_rtol`` mode.
        density: add the SLQ spectral density (``density_runs`` runs of ``density_steps`` steps).
        density_runs: SLQ runs.
        density_steps: Lanczos steps per SLQ run.
        per_layer_by: ``'param'`` or ``'module'`` to add per-layer top eigenvalue and trace.
        per_batch: run the per-batch protocol on the first ``per_batch`` batches.
        per_batch_which: ``which`` of the per-batch protocol (``'LM'``: what power iteration finds;
            the only choice with ``backend='pyhessian'``).
        measures: sharpness measures beyond the spectrum (:func:`landscape.measures.measure_names`).
        measure_options: their settings (``None``: the defaults; its ``seed`` is replaced by ``seed``).
        backend: ``'landscape'`` or ``'pyhessian'``.
        mode: HVP mode ``'auto'|'rev-rev'|'fwd-rev'``.
        hvp: ``'exact'`` (on the math attention kernel; an op without a double backward switches to
            finite differences with a warning) or ``'finite-difference'`` (central differences of
            gradients: first derivatives only, a gradient's memory); every operator of every stage.
        blocks: per-block spectra: ``None`` (none), ``'auto'`` (per transformer layer: attention,
            MLP and norms, plus the embeddings; per top-level module otherwise) or glob patterns of
            parameter names, one block each (:mod:`landscape.hessian.blocks`). Top-``top_k`` and
            the density (``density_runs`` x ``density_steps``) of each block, and their
            Jensen-Shannon distances.
        seed: seed of every random draw.
        allow_nondeterministic: skip the determinism check of loader data.
        cache_graphs: keep every batch's gradient graph between products (rev-rev; faster when
            the activations of the whole sample fit in memory).
    """

    top_k: int = 5
    which: str = "LA"
    tol: float = 1e-6
    max_matvecs: int | None = None
    eigen_block: int | str | None = None
    with_trace: bool = False
    trace_method: str = "hutch++"
    trace_matvecs: int = 99
    trace_rtol: float | None = None
    trace_max_matvecs: int = 3000
    density: bool = False
    density_runs: int = 4
    density_steps: int = 40
    per_layer_by: str | None = None
    per_batch: int | None = None
    per_batch_which: str = "LM"
    measures: tuple[str, ...] = ()
    measure_options: MeasureOptions | None = None
    backend: str = "landscape"
    mode: str = "auto"
    hvp: str = "exact"
    blocks: str | tuple[str, ...] | None = None
    seed: int = 0
    allow_nondeterministic: bool = False
    cache_graphs: bool = False

    @property
    def wants_trace(self) -> bool:
        """The trace is estimated when asked for, or when a target accuracy is given."""
        return self.with_trace or self.trace_rtol is not None

    @property
    def eigen_block_size(self) -> int | None:
        """Block size of the eigenvalue stage: ``None`` for single-vector Lanczos (and for a value
        that :meth:`validate` refuses)."""
        b = auto_eigen_block(self.top_k) if self.eigen_block == "auto" else self.eigen_block
        return b if isinstance(b, int) and not isinstance(b, bool) and b >= 2 else None

    @property
    def measure_settings(self) -> MeasureOptions:
        """:attr:`measure_options` (or the defaults) drawing from the run's ``seed``."""
        return replace(self.measure_options or MeasureOptions(), seed=self.seed)

    def measure_stage_options(self, name: str) -> dict[str, Any]:
        """What keys the stage of measure ``name``: its name and only the options it reads
        (:func:`~landscape.measures.measure_settings`), so another measure's option leaves it valid."""
        return {"name": name, "options": measure_settings(name, self.measure_settings)}

    def with_overrides(self, **overrides: Any) -> SharpnessOptions:
        """A copy with ``overrides`` applied.

        Raises:
            ConfigError: a name that is not a field.
        """
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(f"unknown sharpness options {unknown}; valid: {sorted(known)}")
        return replace(self, **overrides)

    def validate(self, num_params: int) -> None:
        """Refuse impossible settings before any product is spent, naming the parameter.

        Raises:
            ConfigError: the first bad field, its value and what would be valid.
        """
        check_choice("which", self.which, WHICH)
        check_choice("backend", self.backend, BACKENDS)
        check_choice("trace_method", self.trace_method, TRACE_METHODS)
        check_choice("per_batch_which", self.per_batch_which, WHICH)
        check_choice("hvp", self.hvp, HVP_METHODS)
        check_positive("top_k", self.top_k)
        check_positive("tol", self.tol)
        self._check_eigen_block(num_params)
        if self.per_layer_by is not None:
            check_choice("per_layer", self.per_layer_by, GROUP_BY)
        if self.trace_rtol is not None:
            check_positive("trace_rtol", self.trace_rtol)
        self._check_budgets(num_params)
        if self.measures:
            check_measure_options(parse_measure_names(self.measures), self.measure_settings)
        if self.blocks is not None:
            check_block_patterns(self.blocks)
            check_positive("density_runs", self.density_runs)
            check_positive("density_steps", self.density_steps)
        if self.backend == "pyhessian":
            self._check_pyhessian()

    def _check_eigen_block(self, n: int) -> None:
        b = self.eigen_block
        if b is None or b == "auto":
            return
        if isinstance(b, bool) or not isinstance(b, int) or not 1 <= b <= n:
            raise ConfigError(
                f"eigen_block={b!r} is not valid; use None or 1 (single-vector Lanczos), an integer "
                f"between 2 and {n} (block Lanczos) or 'auto'"
            )
        if b > 1 and self.backend == "pyhessian":
            raise ConfigError(
                f"eigen_block={b!r} is not available with backend='pyhessian' (power iteration); "
                "use backend='landscape' or eigen_block=None"
            )

    def _check_budgets(self, n: int) -> None:
        if self.top_k > n:
            raise ConfigError(
                f"top_k={self.top_k!r} is more than the {n} parameters of the model; use top_k <= {n}"
            )
        if self.max_matvecs is not None and self.max_matvecs < self.top_k:
            raise ConfigError(f"max_matvecs={self.max_matvecs!r} must be at least top_k={self.top_k}")
        if self.wants_trace:
            need = MIN_MATVECS[self.trace_method]
            if self.trace_matvecs < need:
                raise ConfigError(
                    f"trace_matvecs={self.trace_matvecs!r} is too small for "
                    f"trace_method={self.trace_method!r}; it needs at least {need}"
                )
            if self.trace_method == "xtrace" and self.trace_rtol is not None:
                raise ConfigError(
                    "trace_rtol is not available with trace_method='xtrace' (a fixed budget); "
                    "use trace_method='hutch++' or 'hutchinson'"
                )
        if self.density:
            check_positive("density_runs", self.density_runs)
            check_positive("density_steps", self.density_steps)
        if self.per_batch is not None:
            check_positive("per_batch", self.per_batch)

    def _check_pyhessian(self) -> None:
        if self.hvp != "exact":
            raise ConfigError(
                f"hvp={self.hvp!r} is not available with backend='pyhessian' (its own exact "
                "products); use backend='landscape' or hvp='exact'"
            )
        if self.which == "SA":
            raise ConfigError(
                "which='SA' is not available with backend='pyhessian' (power iteration finds the "
                "largest-magnitude eigenvalues); use backend='landscape' or which='LM'"
            )
        if self.per_batch is not None and self.per_batch_which != "LM":
            raise ConfigError(
                f"per_batch_which={self.per_batch_which!r} is not available with backend='pyhessian' "
                "(power iteration finds the largest-magnitude eigenvalues); use per_batch_which='LM' "
                "or backend='landscape'"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings (``measures`` as a list, ``measure_options`` as a dictionary)."""
        d = asdict(self)
        d["measures"] = list(self.measures)
        d["blocks"] = (
            self.blocks if self.blocks is None or isinstance(self.blocks, str) else list(self.blocks)
        )
        d["measure_options"] = self.measure_settings.to_dict() if self.measures else None
        return d
