"""Result dataclasses of the Hessian routines: JSON for scalars and short arrays, NPZ for large arrays.

``result.save(path)`` writes ``path`` (JSON) and, when the result holds large arrays (eigenvectors,
density grids), ``path`` with suffix ``.npz`` next to it; ``Class.load(path)`` reads both back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch

from landscape.errors import ResultFileError
from landscape.io.atomic import atomic_save_npz, atomic_write_json
from landscape.io.jsonio import decode_float, encode

R = TypeVar("R", bound="SavedResult")


def _jsonable(v: Any) -> Any:
    """``v`` as plain JSON values: nested results as their dicts, the rest under the one policy of
    :mod:`landscape.io.jsonio` (NaN -> ``None``, +/-inf -> ``"inf"``/``"-inf"``)."""
    if isinstance(v, SavedResult):
        return v.to_dict()
    if isinstance(v, (list, tuple)):  # a list may hold results (``PerLayerResult.layers``)
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return encode(v)


class SavedResult:
    """Mixin: ``to_dict``/``from_dict``, ``save``/``load`` for dataclasses.

    ``_array_fields`` are numpy arrays kept in the JSON as lists; ``_npz_fields`` are arrays (or
    tensors) written to the companion NPZ; ``_nested`` maps a field to the result class it holds.
    """

    _array_fields: ClassVar[tuple[str, ...]] = ()
    _npz_fields: ClassVar[tuple[str, ...]] = ()
    _nested: ClassVar[dict[str, type[SavedResult]]] = {}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (without the NPZ arrays)."""
        out: dict[str, Any] = {}
        for f in fields(self):  # type: ignore[arg-type]
            if f.name in self._npz_fields or f.name.startswith("_"):
                continue
            out[f.name] = _jsonable(getattr(self, f.name))
        return out

    @classmethod
    def from_dict(cls: type[R], d: dict[str, Any], arrays: dict[str, np.ndarray] | None = None) -> R:
        kwargs: dict[str, Any] = {}
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        for k, v in d.items():
            if k not in names:
                continue
            if k in cls._nested and v is not None:
                sub = None
                if arrays is not None:
                    pre = f"{k}__"
                    sub = {a[len(pre) :]: arr for a, arr in arrays.items() if a.startswith(pre)}
                v = cls._nested[k].from_dict(v, sub)
            elif k in cls._array_fields and v is not None:
                v = np.asarray(
                    [decode_float(x) for x in v] if v and not isinstance(v[0], list) else v, dtype=float
                )
            kwargs[k] = v
        for k in cls._npz_fields:
            if arrays is not None and k in arrays:
                kwargs[k] = torch.from_numpy(arrays[k]) if k == "vectors" else np.asarray(arrays[k])
        return cls(**kwargs)

    def _npz_arrays(self) -> dict[str, np.ndarray]:
        out = {}
        for k in self._npz_fields:
            v = getattr(self, k, None)
            if v is None:
                continue
            out[k] = v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
        for k in self._nested:
            v = getattr(self, k, None)
            if isinstance(v, SavedResult):
                out.update({f"{k}__{a}": arr for a, arr in v._npz_arrays().items()})
        return out

    def save(self, path: str | Path) -> Path:
        """Write the JSON to ``path`` (and the arrays to ``path.with_suffix('.npz')``), atomically."""
        path = Path(path)
        arrays = self._npz_arrays()
        if arrays:
            atomic_save_npz(path.with_suffix(".npz"), **arrays)
        atomic_write_json(path, {"kind": type(self).__name__, **self.to_dict()})
        return path

    @classmethod
    def load(cls: type[R], path: str | Path) -> R:
        """Read a result written by :meth:`save`."""
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ResultFileError(f"cannot read result file {str(path)!r}: {exc}") from exc
        kind = d.pop("kind", cls.__name__)
        if kind != cls.__name__:
            raise ResultFileError(f"{str(path)!r} holds a {kind}, not a {cls.__name__}")
        npz = path.with_suffix(".npz")
        arrays = dict(np.load(npz)) if npz.exists() else None
        return cls.from_dict(d, arrays)


@dataclass
class EigenResult(SavedResult):
    """Eigenpairs from Lanczos or power iteration.

    Attributes:
        eigenvalues: sorted by ``which``: ``LA`` descending, ``SA`` ascending, ``LM`` by descending
            magnitude.
        residuals: ``||H y_i - theta_i y_i||`` of each Ritz pair (``|beta_m s_{m,i}|``).
        converged: whether each pair met ``residual <= tol * |theta_i|``.
        matvecs: Hessian-vector products used.
        which: ``LA``, ``SA`` or ``LM``.
        tol: the relative residual tolerance.
        method: ``lanczos``, ``block-lanczos`` or ``power``.
        restarts: Lanczos restarts (iterations per eigenpair for power iteration).
        passes: ``op @`` calls of a block method (each pushes a block of vectors through one
            product call); ``None`` for the single-vector methods and for files written before.
        vectors: ``(n, k)`` flat eigenvectors (columns), or ``None``.
        eigenvectors: one list of parameter-shaped tensors per eigenpair (operator results only).
    """

    eigenvalues: np.ndarray
    residuals: np.ndarray
    converged: list[bool]
    matvecs: int
    which: str = "LA"
    tol: float = 0.0
    method: str = "lanczos"
    restarts: int = 0
    seconds: float = 0.0
    passes: int | None = None
    vectors: torch.Tensor | None = None
    eigenvectors: list[list[torch.Tensor]] = field(default_factory=list, repr=False)

    _array_fields: ClassVar[tuple[str, ...]] = ("eigenvalues", "residuals")
    _npz_fields: ClassVar[tuple[str, ...]] = ("vectors", "eigenvectors")

    def _npz_arrays(self) -> dict[str, np.ndarray]:
        return {"vectors": self.vectors.detach().cpu().numpy()} if self.vectors is not None else {}

    @property
    def all_converged(self) -> bool:
        return bool(all(self.converged))


@dataclass
class TraceResult(SavedResult):
    """A stochastic trace estimate.

    Attributes:
        estimate: the estimate of ``tr(H)``.
        stderr: its standard error (sample standard deviation of the probes over sqrt(count)).
        matvecs: Hessian-vector products used.
        method: ``hutchinson``, ``hutch++`` or ``xtrace``.
        samples: the Rademacher probes of the stochastic part.
        rtol: the requested relative standard error (``None``: fixed budget).
        converged: whether ``stderr <= rtol * |estimate|`` was met (``True`` without ``rtol``).
    """

    estimate: float
    stderr: float
    matvecs: int
    method: str
    samples: int = 0
    rtol: float | None = None
    converged: bool = True
    seconds: float = 0.0


@dataclass
class DensityResult(SavedResult):
    """Spectral density from stochastic Lanczos quadrature.

    Attributes:
        nodes: ``(runs, m)`` Ritz values of each run (quadrature nodes).
        weights: ``(runs, m)`` squared first components of the Ritz vectors (each row sums to 1).
        grid: points where the smoothed density is evaluated.
        density: ``(1/runs) sum_r sum_i w_ri N(grid; theta_ri, sigma^2)``.
        sigma: Gaussian smoothing width.
        matvecs: Hessian-vector products used.
        num_params: dimension ``n`` of the operator.
    """

    nodes: np.ndarray
    weights: np.ndarray
    grid: np.ndarray
    density: np.ndarray
    sigma: float
    matvecs: int
    num_params: int
    seconds: float = 0.0

    _npz_fields: ClassVar[tuple[str, ...]] = ("nodes", "weights", "grid", "density")

    def moment(self, p: int) -> float:
        """Quadrature estimate of ``tr(H^p) / n``."""
        return float(np.mean(np.sum(self.weights * self.nodes**p, axis=1)))


@dataclass
class LayerEntry(SavedResult):
    """Top eigenvalue and trace of one diagonal block of the Hessian.

    ``tied_to`` names the other places of the block's tensors in the model (a tied weight, such as
    GPT-2's output head sharing the token embedding, is one tensor: its block holds the curvature of
    both uses).
    """

    name: str
    params: list[str]
    num_params: int
    top_eigenvalue: float
    residual: float
    converged: bool
    trace: float
    trace_stderr: float
    matvecs: int
    tied_to: list[str] = field(default_factory=list)


@dataclass
class PerLayerResult(SavedResult):
    """Per-tensor (or per-module) curvature: one :class:`LayerEntry` per group."""

    group_by: str
    layers: list[LayerEntry]
    matvecs: int
    trace_samples: int
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["layers"] = [e.to_dict() for e in self.layers]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], arrays: dict[str, np.ndarray] | None = None) -> PerLayerResult:
        d = dict(d)
        d["layers"] = [LayerEntry.from_dict(e) for e in d.get("layers", [])]
        return cls(**{k: v for k, v in d.items() if k in {f.name for f in fields(cls)}})


@dataclass
class PerBatchResult(SavedResult):
    """The per-batch protocol: top-k eigenvalues of each of the first B batch Hessians.

    Attributes:
        eigenvalues: ``(B, k)`` eigenvalues per batch (sorted as ``which``).
        mean_positive: mean of the positive values over all batches.
        max: the largest value.
        percent_negative: percentage of negative values.
    """

    eigenvalues: np.ndarray
    mean_positive: float
    max: float
    percent_negative: float
    which: str
    batches: int
    batch_size: int
    matvecs: int
    seconds: float = 0.0

    _array_fields: ClassVar[tuple[str, ...]] = ("eigenvalues",)
