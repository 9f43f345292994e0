"""The result of ``sharpness``: the ``sharpness.json`` contract."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from landscape.hessian.blocks import BlockSpectra
from landscape.hessian.results import (
    DensityResult,
    EigenResult,
    PerBatchResult,
    PerLayerResult,
    SavedResult,
    TraceResult,
)
from landscape.measures.common import MeasureResult


@dataclass
class SharpnessResult(SavedResult):
    """Everything ``landscape sharpness`` reports (the ``sharpness.json`` contract).

    ``eigenvalues`` are listed most-wanted first: ``which='LA'`` descending, ``'SA'`` ascending (the
    most negative first), ``'LM'`` by decreasing magnitude (``residuals`` and ``converged`` follow the
    same order). ``matvecs`` is the total number of Hessian-vector products (the measures count their
    own cost). ``hvp_info`` is how the products were formed (:attr:`HessianOperator.info
    <landscape.hessian.operator.HessianOperator.info>`: ``hvp`` exact or finite-difference, the
    ``attention_backend`` they ran on, the op that sent an exact product to finite differences
    (``hvp_fallback_op``), the ``finite_difference_step`` rule; ``None`` for PyHessian and for files
    written before it was recorded). ``blocks`` holds the per-block spectra
    (:class:`~landscape.hessian.blocks.BlockSpectra`). ``measures`` maps each measure's name to its
    :class:`~landscape.measures.common.MeasureResult` (``None`` when none was asked for).
    ``degenerate`` says why the curvature cannot be read as flatness (an all-zero spectrum, a
    saturated softmax: see :func:`~landscape.analysis.pipeline.degenerate_reason`), ``None`` when it
    can (and for files written before it was recorded).
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
    measures: dict[str, MeasureResult] | None = None
    notes: list[str] = field(default_factory=list)
    operator: Any = None
    hvp_info: dict[str, Any] | None = None
    blocks: BlockSpectra | None = None
    degenerate: str | None = None

    _array_fields: ClassVar[tuple[str, ...]] = ("eigenvalues", "residuals")
    _nested: ClassVar[dict[str, type[SavedResult]]] = {
        "trace": TraceResult,
        "density": DensityResult,
        "per_layer": PerLayerResult,
        "per_batch": PerBatchResult,
        "blocks": BlockSpectra,
    }

    @property
    def lambda_max(self) -> float:
        """The largest eigenvalue found (the top one only when ``which`` is ``'LA'`` or ``'LM'``)."""
        return float(np.max(self.eigenvalues))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; each measure as ``MeasureResult.to_dict()``."""
        d = super().to_dict()
        if self.measures is not None:
            d["measures"] = {name: m.to_dict() for name, m in self.measures.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], arrays: dict[str, np.ndarray] | None = None) -> SharpnessResult:
        result = super().from_dict(d, arrays)
        if result.measures is not None:
            result.measures = {name: MeasureResult.from_dict(m) for name, m in result.measures.items()}
        return result


@dataclass
class SpectrumStages:
    """What a backend computes before the shared stages (density, per layer, measures) run.

    Attributes:
        eigen: the eigenpairs, most wanted first (``vectors`` kept when they were computed now).
        hvp_mode: the Hessian-vector product that ran.
        trace: the trace estimate, if asked for.
        per_batch: the per-batch protocol, if asked for.
        notes: what the reader should know about how these were obtained.
        operator: the backend's Hessian operator, reused by the later stages (``None``: PyHessian).
    """

    eigen: EigenResult
    hvp_mode: str
    trace: TraceResult | None = None
    per_batch: PerBatchResult | None = None
    notes: list[str] = field(default_factory=list)
    operator: Any = None
