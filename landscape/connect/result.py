"""Results of ``landscape connect``: loss and accuracy along paths between two solutions, with barriers.

A path is evaluated at positions ``p_0 = 0 < ... < p_{n-1} = 1`` (``alphas`` of the linear path,
``t`` of a curve). Its barrier (Frankle et al. 2020, "Linear Mode Connectivity and the Lottery
Ticket Hypothesis", Definition 1) is the largest rise above the chord between the end points,

    ``B = max_i  v(p_i) - ((1 - p_i) v(0) + p_i v(1))``,

for the loss ``v = L`` and for the error ``v = 1 - accuracy``; it is ``>= 0`` because the chord
meets the path at both ends, and it is the barrier *at the evaluated positions* (a lower bound of
the continuous one; more ``points`` tighten it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from landscape.errors import ConfigError, ResultFileError
from landscape.io.atomic import atomic_write_json

FORMAT = "landscape-connect"
FORMAT_VERSION = 1
LINEAR_KINDS = ("linear", "linear_unaligned")


def barrier(positions: np.ndarray | list[float], values: np.ndarray | list[float]) -> tuple[float, float]:
    """Barrier ``max_i v_i - ((1 - p_i) v_0 + p_i v_last)`` and the position where it is attained.

    Args:
        positions: increasing, from 0 to 1 (both included).
        values: the quantity at each position (loss, or error = 1 - accuracy).

    Returns:
        ``(barrier, position)``; at least ``(0.0, 0.0)`` up to rounding, since the chord meets both ends.

    Raises:
        ConfigError: fewer than two positions, or not from 0 to 1.
    """
    p = np.asarray(positions, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if p.ndim != 1 or p.shape != v.shape or len(p) < 2:
        raise ConfigError(
            f"positions and values must be two 1-D arrays of the same length >= 2, got {p.shape}, {v.shape}"
        )
    if p[0] != 0.0 or p[-1] != 1.0:
        raise ConfigError(f"positions must run from 0 to 1, got {p[0]} to {p[-1]}")
    rise = v - ((1.0 - p) * v[0] + p * v[-1])
    i = int(np.argmax(rise))
    return float(rise[i]), float(p[i])


def _finite_or_none(v: Any) -> Any:
    """JSON has no NaN: non-finite numbers (accuracy of a non-classifier) are written as null."""
    if isinstance(v, np.ndarray):
        return [_finite_or_none(float(x)) for x in v]
    return float(v) if np.isfinite(v) else None


@dataclass
class PathResult:
    """Loss and accuracy along one path, with its barriers.

    Attributes:
        kind: ``linear`` (A to B, or to aligned B), ``linear_unaligned``, ``bezier`` or ``polychain``.
        positions: ``alphas`` (linear) or ``t`` (curves), from 0 to 1.
        loss: mean loss at each position.
        accuracy: accuracy at each position.
        bn: how batch norm was handled: ``recalibrate``, ``states`` or ``none`` (no batch norm).
        passes: forward passes over a dataset spent on this path (evaluation, recalibration, training).
        seconds: wall time spent on this path.
        info: anything else (the curve checkpoint, its training losses, ...).
    """

    kind: str
    positions: np.ndarray
    loss: np.ndarray
    accuracy: np.ndarray
    bn: str
    passes: int = 0
    seconds: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.positions = np.asarray(self.positions, dtype=np.float64)
        self.loss = np.asarray(self.loss, dtype=np.float64)
        self.accuracy = np.asarray(self.accuracy, dtype=np.float64)

    @property
    def position_name(self) -> str:
        return "alphas" if self.kind in LINEAR_KINDS else "t"

    @property
    def error(self) -> np.ndarray:
        return 1.0 - self.accuracy

    def barriers(self) -> dict[str, float]:
        bl, bl_at = barrier(self.positions, self.loss)
        be, be_at = barrier(self.positions, self.error)
        return {"barrier_loss": bl, "barrier_loss_at": bl_at, "barrier_error": be, "barrier_error_at": be_at}

    def to_dict(self) -> dict[str, Any]:
        return {
            self.position_name: self.positions.tolist(),
            "loss": _finite_or_none(self.loss),
            "accuracy": _finite_or_none(self.accuracy),
            **{k: _finite_or_none(v) for k, v in self.barriers().items()},
            "bn": self.bn,
            "passes": self.passes,
            "seconds": self.seconds,
            **({"info": self.info} if self.info else {}),
        }

    @classmethod
    def from_dict(cls, kind: str, d: dict[str, Any]) -> PathResult:
        key = "alphas" if kind in LINEAR_KINDS else "t"
        return cls(
            kind=kind,
            positions=np.asarray(d[key], dtype=np.float64),
            loss=np.asarray([np.nan if v is None else v for v in d["loss"]], dtype=np.float64),
            accuracy=np.asarray([np.nan if v is None else v for v in d["accuracy"]], dtype=np.float64),
            bn=str(d["bn"]),
            passes=int(d.get("passes", 0)),
            seconds=float(d.get("seconds", 0.0)),
            info=dict(d.get("info") or {}),
        )


@dataclass
class ConnectResult:
    """Every path between two checkpoints, and how they were computed (``DIR/connect.json``)."""

    paths: dict[str, PathResult]
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            **self.metadata,
            **{k: p.to_dict() for k, p in self.paths.items()},
        }

    def to_json(self, path: str | Path) -> Path:
        """Write the result atomically."""
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ConnectResult:
        if d.get("format") != FORMAT:
            raise ResultFileError(f"not a {FORMAT} result (format={d.get('format')!r})")
        kinds = ("linear", "linear_unaligned", "bezier", "polychain")
        paths = {k: PathResult.from_dict(k, d[k]) for k in kinds if k in d}
        meta = {k: v for k, v in d.items() if k not in kinds and k not in ("format", "format_version")}
        return cls(paths=paths, metadata=meta)

    @classmethod
    def from_json(cls, path: str | Path) -> ConnectResult:
        """Read ``connect.json``.

        Raises:
            ResultFileError: missing, unreadable or not a connect result.
        """
        try:
            d = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ResultFileError(f"cannot read connect result {str(path)!r}: {exc}") from None
        if not isinstance(d, dict):
            raise ResultFileError(f"{str(path)!r} is not a connect result")
        return cls.from_dict(d)
