"""The surface file: coordinates, loss, accuracy, a completed mask, metadata and a settings fingerprint.

One NPZ file holds everything a figure needs; it is rewritten atomically as chunks of grid points
finish, so an interrupted run leaves a valid partial file that the same command resumes. A file made
with other settings (checkpoint, directions, grid, data, batch-norm policy, a reduced precision) has
another fingerprint and is refused unless the caller asks to overwrite it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from landscape.errors import ResultFileError
from landscape.io.atomic import atomic_save_npz
from landscape.io.jsonio import json_default
from landscape.io.result_folder import SettingsMismatchError, check_same_settings

FORMAT_VERSION = 1
_EXTRA_PREFIX = "extra__"


class NonFiniteLossWarning(UserWarning):
    """Some grid points have a NaN or infinite loss (kept in the file, left out of figures)."""


class SurfaceMismatchError(SettingsMismatchError):
    """The surface file was made with other settings; ``path`` and ``differences`` say where and what."""


@dataclass
class Surface:
    """A 1D or 2D loss surface (complete or partial).

    Attributes:
        xs: coordinates along the first direction, shape ``(nx,)``.
        ys: coordinates along the second direction ``(ny,)``, or ``None`` for a 1D surface.
        loss: mean loss, shape ``(nx,)`` or ``(nx, ny)`` with ``loss[i, j]`` at ``(xs[i], ys[j])``;
            NaN where not computed yet; a computed point keeps its NaN or inf (see ``done``).
        accuracy: same shape as ``loss``; NaN where the loss is not finite.
        done: boolean mask of computed points.
        metadata: settings and direction summaries (JSON-serializable), including
            ``fingerprint_parts``, the settings the fingerprint is made of.
        fingerprint: SHA-256 of the settings; a resumed run must match it.
        extras: further arrays (``path_x``/``path_y`` of a projected trajectory, eigenvalues, ...).
    """

    xs: np.ndarray
    ys: np.ndarray | None
    loss: np.ndarray
    accuracy: np.ndarray
    done: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)
    fingerprint: str = ""
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def empty(
        cls,
        xs: np.ndarray,
        ys: np.ndarray | None = None,
        *,
        metadata: dict[str, Any] | None = None,
        fingerprint: str = "",
    ) -> Surface:
        """A surface with every point still to compute."""
        shape = (len(xs),) if ys is None else (len(xs), len(ys))
        return cls(
            xs=np.asarray(xs, dtype=np.float64),
            ys=None if ys is None else np.asarray(ys, dtype=np.float64),
            loss=np.full(shape, np.nan),
            accuracy=np.full(shape, np.nan),
            done=np.zeros(shape, dtype=bool),
            metadata=dict(metadata or {}),
            fingerprint=fingerprint,
        )

    @property
    def ndim(self) -> int:
        """1 or 2."""
        return 1 if self.ys is None else 2

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.loss.shape)

    @property
    def complete(self) -> bool:
        """Every grid point computed."""
        return bool(self.done.all())

    @property
    def num_done(self) -> int:
        return int(self.done.sum())

    @property
    def finite(self) -> np.ndarray:
        """Mask of computed points with a finite loss (what figures and summaries use)."""
        return self.done & np.isfinite(self.loss)

    @property
    def num_nonfinite(self) -> int:
        """Computed points whose loss is NaN or infinite."""
        return int((self.done & ~np.isfinite(self.loss)).sum())

    def coordinates(self, flat_index: int) -> tuple[float, ...]:
        """The direction coefficients of the point with row-major index ``flat_index``."""
        if self.ys is None:
            return (float(self.xs[flat_index]),)
        i, j = divmod(flat_index, len(self.ys))
        return (float(self.xs[i]), float(self.ys[j]))

    def save(self, path: str | Path) -> Path:
        """Write the NPZ file atomically (temporary file, fsync, rename)."""
        arrays: dict[str, Any] = {
            "format_version": np.array(FORMAT_VERSION),
            "xs": self.xs,
            "loss": self.loss,
            "accuracy": self.accuracy,
            "done": self.done,
            "metadata_json": np.array(json.dumps(self.metadata, default=json_default, sort_keys=True)),
            "fingerprint": np.array(self.fingerprint),
        }
        if self.ys is not None:
            arrays["ys"] = self.ys
        for k, v in self.extras.items():
            arrays[_EXTRA_PREFIX + k] = np.asarray(v)
        return atomic_save_npz(path, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> Surface:
        """Read a surface file written by :meth:`save`.

        Raises:
            ResultFileError: the file is missing, unreadable or not a surface file.
        """
        p = Path(path)
        if not p.is_file():
            raise ResultFileError(f"surface file {str(p)!r} does not exist")
        try:
            with np.load(p, allow_pickle=False) as z:
                files = set(z.files)
                missing = {"xs", "loss", "accuracy", "done", "metadata_json", "fingerprint"} - files
                if missing:
                    raise ResultFileError(
                        f"{str(p)!r} is not a surface file (missing {', '.join(sorted(missing))})"
                    )
                return cls(
                    xs=z["xs"].astype(np.float64),
                    ys=z["ys"].astype(np.float64) if "ys" in files else None,
                    loss=z["loss"],
                    accuracy=z["accuracy"],
                    done=z["done"].astype(bool),
                    metadata=json.loads(str(z["metadata_json"])),
                    fingerprint=str(z["fingerprint"]),
                    extras={k[len(_EXTRA_PREFIX) :]: z[k] for k in z.files if k.startswith(_EXTRA_PREFIX)},
                )
        except ResultFileError:
            raise
        except Exception as exc:
            raise ResultFileError(f"cannot read surface file {str(p)!r}: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly summary (for ``--json``)."""
        mask = self.finite
        out: dict[str, Any] = {
            "ndim": self.ndim,
            "shape": list(self.shape),
            "points_done": self.num_done,
            "points_nonfinite": self.num_nonfinite,
            "points_total": int(self.done.size),
            "x_range": [float(self.xs[0]), float(self.xs[-1])],
            "fingerprint": self.fingerprint,
        }
        if self.ys is not None:
            out["y_range"] = [float(self.ys[0]), float(self.ys[-1])]
        for key in ("precision", "precision_check"):  # a reduced precision and its float32 difference
            if key in self.metadata:
                out[key] = self.metadata[key]
        if mask.any():
            k = int(np.argmin(np.where(mask, self.loss, np.inf)))
            out["loss_min"] = float(self.loss.reshape(-1)[k])
            out["loss_min_at"] = list(self.coordinates(k))
            out["loss_max"] = float(self.loss[mask].max())
            acc = self.accuracy[mask]
            if np.isfinite(acc).any():
                out["accuracy_max"] = float(np.nanmax(acc))
        out["metadata"] = self.metadata
        return out


def check_resumable(existing: Surface, fingerprint: str, parts: dict[str, Any], path: str | Path) -> None:
    """Refuse a surface file made with other settings, naming what differs.

    The fingerprints decide; the settings they are made of (``fingerprint_parts``) name what differs.

    Raises:
        SurfaceMismatchError: the fingerprints differ.
    """
    check_same_settings(
        path,
        existing.metadata.get("fingerprint_parts", {}),
        parts,
        template="{path} was computed with other settings (differs in: {differences}); "
        "write to another path, or pass overwrite=True to discard it",
        digests=(existing.fingerprint, fingerprint),
        error=SurfaceMismatchError,
    )
