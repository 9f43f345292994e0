"""``sharpness.json``: the one writer, the one reader and the settings a result is fingerprinted with.

The file holds, in this order, where the result came from, the result, and what it depends on::

    checkpoint, checkpoint_digest, data, batch_size, world_size   the checkpoint (path and the digest of
                                                                  its tensors), the sample, the batches
    eigenvalues, residuals, trace, ..., measures, notes           the SharpnessResult body
    settings                                                      sharpness_settings(): every number the
                                                                  result depends on

``density.npz`` (the SLQ arrays) and ``density.png`` (drawn by the caller, who owns the figure) sit
beside it when the result has a density, and never when it has none; ``blocks.png`` (the per-block
densities and their Jensen-Shannon distances, whose numbers are all in the JSON's ``blocks``) when it
has per-block spectra. Finished stages of an
interrupted run wait in ``.sharpness-stages/`` (:func:`resume_folder`) until the file is written.
``landscape sharpness -o DIR``, the demo, ``landscape compare`` and a notebook all write and read
through :func:`write_sharpness_file` and :func:`read_sharpness_file`.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from landscape.analysis.options import SharpnessOptions
from landscape.analysis.result import SharpnessResult
from landscape.errors import ResultFileError
from landscape.io.atomic import atomic_save_npz, atomic_write_json, save_figure
from landscape.io.digest import weights_digest

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SHARPNESS_FILE = "sharpness.json"
#: Written beside ``sharpness.json`` by the same result (and removed when it has no density).
DENSITY_FILES = ("density.npz", "density.png")
#: Written beside ``sharpness.json`` when the result has per-block spectra (removed when it has none).
BLOCK_FILES = ("blocks.png",)
#: Every file a result writes beside ``sharpness.json``.
COMPANION_FILES = (*DENSITY_FILES, *BLOCK_FILES)
#: Where the finished stages of an unfinished run are kept (removed once the file is written).
STAGE_FOLDER = ".sharpness-stages"
_PROVENANCE = ("checkpoint", "checkpoint_digest", "data", "batch_size", "world_size")


def objective_settings(
    checkpoint: Any, data: Any, *, batch_size: int, dtype: Any, bn_mode: str
) -> dict[str, Any]:
    """What any result computed on a checkpoint's objective depends on: the weights (their digest),
    the model, the data, the batches, the precision and the batch-norm mode (``evaluation.json``
    records these alone; :func:`sharpness_settings` adds the analysis options).

    Args:
        checkpoint: the loaded checkpoint (:class:`~landscape.models.checkpoints.Checkpoint`).
        data: the :class:`~landscape.data.datasets.DataSpec` of the examples.
        batch_size: examples per batch.
        dtype: the precision asked for (a ``torch.dtype``).
        bn_mode: ``eval`` or ``train``.
    """
    return {
        "checkpoint_digest": weights_digest(checkpoint.state_dict),
        "model": checkpoint.model_spec.to_dict() if checkpoint.model_spec else None,
        "data": data.to_dict(),
        "batch_size": batch_size,
        "dtype": str(dtype),
        "bn_mode": bn_mode,
    }


def sharpness_settings(
    options: SharpnessOptions,
    checkpoint: Any,
    data: Any,
    *,
    batch_size: int,
    dtype: Any,
    bn_mode: str,
) -> dict[str, Any]:
    """What a result depends on (device, output and progress left out): its fingerprint.

    Two results with equal settings are the same result (a rerun, a resume); a result made with other
    settings is not replaced without asking (``landscape sharpness --overwrite``).

    Args:
        options: the analysis settings.
        checkpoint, data, batch_size, dtype, bn_mode: the objective (:func:`objective_settings`).
    """
    settings: dict[str, Any] = {
        **objective_settings(checkpoint, data, batch_size=batch_size, dtype=dtype, bn_mode=bn_mode),
        "top_k": options.top_k,
        "which": options.which,
        "tol": options.tol,
        "max_matvecs": options.max_matvecs,
        "trace": {
            "method": options.trace_method,
            "matvecs": options.trace_matvecs,
            "rtol": options.trace_rtol,
        }
        if options.wants_trace
        else None,
        "density": {"runs": options.density_runs, "steps": options.density_steps}
        if options.density
        else None,
        "per_layer": options.per_layer_by,
        "per_batch": options.per_batch,
        "backend": options.backend,
        "hvp_mode": options.mode,
        "seed": options.seed,
        "allow_nondeterministic": options.allow_nondeterministic,
    }
    if options.eigen_block_size is not None:  # absent for single-vector Lanczos, as before
        settings["eigen_block"] = options.eigen_block_size
    if options.hvp != "exact":  # absent for the default product, so results written before still match
        settings["hvp"] = options.hvp
    if options.blocks is not None:
        blocks = options.blocks
        settings["blocks"] = blocks if isinstance(blocks, str) else list(blocks)
    if options.measures:  # absent otherwise, so results written before measures existed still match
        settings["measures"] = {
            "names": list(options.measures),
            "options": options.measure_settings.to_dict(),
        }
    return settings


@dataclass
class SharpnessFile:
    """One ``sharpness.json``: the result, the checkpoint and sample it was made from, its settings.

    Attributes:
        result: the analysis.
        checkpoint: the checkpoint's path as given.
        checkpoint_digest: :func:`~landscape.io.digest.weights_digest` of its tensors.
        data: the sample (``DataSpec.to_dict()``: name, split, data_dir, subset, seed).
        batch_size: examples per batch.
        settings: :func:`sharpness_settings`.
        world_size: processes that shared the products (torchrun), 1 otherwise.
    """

    result: SharpnessResult
    checkpoint: str
    checkpoint_digest: str
    data: dict[str, Any]
    batch_size: int | None
    settings: dict[str, Any]
    world_size: int = 1

    @classmethod
    def from_settings(
        cls, result: SharpnessResult, settings: dict[str, Any], *, checkpoint: str | Path, world_size: int = 1
    ) -> SharpnessFile:
        """The file of ``result`` made with ``settings`` (:func:`sharpness_settings`)."""
        return cls(
            result=result,
            checkpoint=str(checkpoint),
            checkpoint_digest=settings["checkpoint_digest"],
            data=dict(settings["data"]),
            batch_size=settings["batch_size"],
            settings=settings,
            world_size=world_size,
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON document, as written and as ``landscape sharpness --json`` prints it."""
        return {
            "checkpoint": self.checkpoint,
            "checkpoint_digest": self.checkpoint_digest,
            "data": self.data,
            "batch_size": self.batch_size,
            "world_size": self.world_size,
            **self.result.to_dict(),
            "settings": self.settings,
        }

    @classmethod
    def from_dict(
        cls, doc: Any, *, source: str = "sharpness.json", density: dict[str, np.ndarray] | None = None
    ) -> SharpnessFile:
        """Read a document written by :meth:`to_dict`; ``density`` holds the arrays of ``density.npz``
        (without them a result's density is ``None``: the JSON keeps only its scalars).

        Raises:
            ResultFileError: naming ``source``: not a JSON object, no eigenvalues, no checkpoint
                digest (a file of an older landscape, or one saved without its provenance), or a
                body that is not a :class:`SharpnessResult`.
        """
        if not isinstance(doc, dict):
            raise ResultFileError(
                f"{source!r} is not a sharpness.json written by landscape (not a JSON object)"
            )
        if not doc.get("eigenvalues"):
            raise ResultFileError(f"{source!r}: it holds no eigenvalues")
        if doc.get("checkpoint_digest") is None:
            raise ResultFileError(f"{source!r}: it has no checkpoint digest (written by an older landscape)")
        body = {k: v for k, v in doc.items() if k not in (*_PROVENANCE, "settings", "kind")}
        if density is None:
            body["density"] = None
        arrays = {f"density__{k}": v for k, v in (density or {}).items()}
        try:
            result = SharpnessResult.from_dict(body, arrays)
        except (TypeError, KeyError, ValueError) as exc:
            raise ResultFileError(
                f"{source!r} is not a sharpness.json written by landscape ({exc})"
            ) from None
        settings = doc.get("settings")
        return cls(
            result=result,
            checkpoint=str(doc.get("checkpoint", "")),
            checkpoint_digest=str(doc["checkpoint_digest"]),
            data=dict(doc.get("data") or {}),
            batch_size=doc.get("batch_size"),
            settings=settings if isinstance(settings, dict) else {},
            world_size=int(doc.get("world_size", 1)),
        )


def resume_folder(out_dir: str | Path, *, world_size: int = 1) -> Path | None:
    """Where the finished stages of a run into ``out_dir`` wait for a resume: ``None`` under torchrun
    (every rank must take part in every product, so no rank may skip one)."""
    return Path(out_dir) / STAGE_FOLDER if world_size == 1 else None


def write_sharpness_file(
    out_dir: str | Path,
    record: SharpnessFile,
    *,
    density_figure: Figure | None = None,
    blocks_figure: Figure | None = None,
) -> dict[str, Path]:
    """Write ``out_dir/sharpness.json`` and its companions, atomically; then drop the stages.

    Args:
        out_dir: the result folder (created).
        record: what to write.
        density_figure: the figure saved as ``density.png`` when the result has a density (drawn by
            the caller: the library's plots sit above this package).
        blocks_figure: the figure saved as ``blocks.png`` when the result has per-block spectra.

    Returns:
        The files written, by name.
    """
    out = Path(out_dir)
    paths = {SHARPNESS_FILE: atomic_write_json(out / SHARPNESS_FILE, record.to_dict())}
    d = record.result.density
    if d is not None:
        paths["density.npz"] = atomic_save_npz(
            out / "density.npz",
            nodes=d.nodes,
            weights=d.weights,
            grid=d.grid,
            density=d.density,
            sigma=d.sigma,
        )
    if d is not None and density_figure is not None:
        paths["density.png"] = save_figure(density_figure, out / "density.png")
    if record.result.blocks is not None and blocks_figure is not None:
        paths["blocks.png"] = save_figure(blocks_figure, out / "blocks.png")
    for name in COMPANION_FILES:  # left by a result this one replaced: they would contradict it
        if name not in paths:
            (out / name).unlink(missing_ok=True)
    shutil.rmtree(out / STAGE_FOLDER, ignore_errors=True)
    return paths


def read_sharpness_file(path: str | Path) -> SharpnessFile:
    """Read a ``sharpness.json`` written by :func:`write_sharpness_file`, with the density arrays of the
    ``density.npz`` beside it (a density whose ``density.npz`` is missing or damaged reads as ``None``:
    the eigenvalues, trace and measures do not depend on it).

    Raises:
        ResultFileError: the file is unreadable or not one of ours (see :meth:`SharpnessFile.from_dict`).
    """
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ResultFileError(f"{str(p)!r} is unreadable ({exc})") from None
    density = None
    npz = p.parent / "density.npz"
    if isinstance(doc, dict) and doc.get("density") is not None and npz.is_file():
        try:
            with np.load(npz) as z:
                density = {k: z[k] for k in ("nodes", "weights", "grid", "density")}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            density = None
    return SharpnessFile.from_dict(doc, source=str(p), density=density)
