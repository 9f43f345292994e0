"""``lambda_max`` of a run's final checkpoint: a stored ``sharpness.json`` that fits it, or computed.

A ``sharpness.json`` stands for the run only when it was computed from the very weights of
``final.pt`` (their digest), for the largest eigenvalue, in eval mode on the run's training data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from landscape.analysis.result_file import SharpnessFile, read_sharpness_file
from landscape.errors import CheckpointError, ResultFileError
from landscape.io.digest import weights_digest
from landscape.runs.summary import RunSummary

#: Where a run keeps a ``sharpness.json`` of its final weights (``landscape sharpness RUN/final.pt -o RUN``).
SHARPNESS_FILES = ("sharpness.json", "sharpness/sharpness.json")


def _stored_sharpness_problem(
    record: SharpnessFile,
    digest: str,
    data_name: str | None,
    samples: int | None,
    seed: int | None,
    tol: float | None,
    dtype: str | None = None,
) -> str | None:
    """Why a stored ``sharpness.json`` cannot stand for lambda_max of the final checkpoint, or ``None``.

    It must be of the same weights (digest), ``which='LA'`` (the top eigenvalue, not the bottom),
    the landscape backend with batch norm in eval mode, on the training split of the run's own data;
    with ``samples``/``seed``/``tol``/``dtype`` given (a requested recomputation) also on that
    sample, at least that tolerance and in that precision.
    """
    problem = stored_sample_problem(record, digest, data_name, samples, seed, dtype)
    if problem is not None:
        return problem
    if record.result.which != "LA":
        return f"it holds which={record.result.which!r} eigenvalues, not the largest ('LA')"
    if tol is not None and not float(record.result.tol) <= tol:
        return f"its tolerance {record.result.tol!r} is looser than tol={tol}"
    return None


def stored_sample_problem(
    record: SharpnessFile,
    digest: str,
    data_name: str | None,
    samples: int | None,
    seed: int | None,
    dtype: str | None = None,
) -> str | None:
    """Why a stored ``sharpness.json`` was not computed from the final weights on the asked sample.

    Same weights (digest), landscape backend, batch norm in eval mode, the training split of the
    run's data, and with ``samples``/``seed``/``dtype`` given that sample and precision; ``None``
    when it was.
    """
    result, data = record.result, record.data
    if record.checkpoint_digest != digest:
        return "it was computed for other weights (an earlier checkpoint or a previous run)"
    if result.backend != "landscape" or result.bn_mode != "eval":
        return f"it was computed with backend={result.backend!r}, bn_mode={result.bn_mode!r}"
    if data.get("split") != "train" or (data_name is not None and data.get("name") != data_name):
        return f"it was computed on data {data.get('name')!r} split {data.get('split')!r}, not the run's training set"
    if samples is not None and (data.get("subset") != samples or data.get("seed") != seed):
        return (
            f"its sample (subset={data.get('subset')!r}, seed={data.get('seed')!r}) is not the one asked "
            f"for (subset={samples}, seed={seed})"
        )
    if dtype is not None and result.dtype != dtype:
        return f"it was computed in dtype {result.dtype!r}, not the asked {dtype!r}"
    return None


def final_weights(run: Path) -> tuple[str, str | None]:
    """``(digest, data name)`` of ``run/final.pt``: what a stored result must have been made from.

    Raises:
        CheckpointError: the checkpoint cannot be read.
    """
    from landscape.models.checkpoints import load_checkpoint

    ckpt = load_checkpoint(run / "final.pt")
    return weights_digest(ckpt.state_dict), ckpt.data_spec.name if ckpt.data_spec is not None else None


def stored_files(run: Path) -> list[tuple[Path, SharpnessFile | ResultFileError]]:
    """Each ``sharpness.json`` of ``run`` (:data:`SHARPNESS_FILES`), read, or why it cannot be."""
    out: list[tuple[Path, SharpnessFile | ResultFileError]] = []
    for path in (run / name for name in SHARPNESS_FILES):
        if path.is_file():
            try:
                out.append((path, read_sharpness_file(path)))
            except ResultFileError as exc:
                out.append((path, exc))
    return out


def use_stored_sharpness(
    summary: RunSummary,
    run: Path,
    *,
    samples: int | None = None,
    seed: int | None = None,
    tol: float | None = None,
    dtype: str | None = None,
) -> bool:
    """Fill ``summary.lambda_max`` from a ``sharpness.json`` in ``run`` that fits its final checkpoint.

    ``samples``, ``seed``, ``tol`` and ``dtype`` (``'float32'``/``'float64'``), when given, must
    match too (see :func:`_stored_sharpness_problem`).

    Returns whether one was used; otherwise ``summary.lambda_max_note`` says why not (``None`` when
    the run holds no sharpness.json).
    """
    candidates = stored_files(run)
    if not candidates:
        return False
    if not (run / "final.pt").is_file():
        summary.lambda_max_note = f"run {summary.name!r}: sharpness.json not used, the run has no final.pt"
        return False
    try:
        digest, data_name = final_weights(run)
    except CheckpointError as exc:
        summary.lambda_max_note = f"run {summary.name!r}: sharpness.json not used, {exc}"
        return False
    reasons = []
    for path, record in candidates:
        if isinstance(record, ResultFileError):
            reasons.append(str(record))
            continue
        problem = _stored_sharpness_problem(record, digest, data_name, samples, seed, tol, dtype)
        if problem is not None:
            reasons.append(f"{str(path)!r}: {problem}")
            continue
        _fill_from(summary, path, record)
        return True
    summary.lambda_max_note = f"run {summary.name!r}: lambda_max left empty, " + "; ".join(reasons)
    return False


def _fill_from(summary: RunSummary, path: Path, record: SharpnessFile) -> None:
    """``summary.lambda_max`` and its provenance from a stored file checked to fit."""
    result, data = record.result, record.data
    summary.lambda_max = result.lambda_max
    summary.lambda_max_samples = int(result.samples)
    summary.lambda_max_source = str(path)
    summary.lambda_max_settings = {
        "checkpoint_digest": record.checkpoint_digest,
        "which": "LA",
        "samples": summary.lambda_max_samples,
        "subset": data.get("subset"),
        "sample_seed": data.get("seed"),
        "split": data.get("split"),
        "tol": result.tol,
        "converged": bool(result.converged[0]) if result.converged else None,
        "dtype": result.dtype,
        "bn_mode": result.bn_mode,
    }
    summary.lambda_max_note = None


def final_objective(
    summary: RunSummary, *, samples: int, seed: int, device: str, dtype: torch.dtype | None = None
) -> tuple[Any, Any, Any]:
    """The training loss of the run's ``final.pt`` on a fixed seeded subset of ``samples`` examples
    (eval mode), in ``dtype`` (``None``: the checkpoint's): ``(objective, checkpoint, data spec)``."""
    from landscape.objective.loading import objective_from_checkpoint

    return objective_from_checkpoint(
        Path(summary.path) / "final.pt", samples=samples, seed=seed, device=device, split="train", dtype=dtype
    )


def compute_lambda_max(
    summary: RunSummary,
    *,
    samples: int,
    seed: int,
    device: str,
    tol: float,
    quiet: bool = True,
    dtype: torch.dtype | None = None,
    loaded: tuple[Any, Any, Any] | None = None,
) -> None:
    """Fill ``summary.lambda_max`` with the top Hessian eigenvalue of its run's ``final.pt`` (Lanczos).

    The objective is the training loss on a fixed seeded subset of ``samples`` examples, in eval mode
    and in ``dtype`` (``None``: the checkpoint's); ``tol`` is Lanczos' relative residual tolerance and
    ``seed`` seeds the subset and the start vector. ``loaded`` is :func:`final_objective`'s result
    when the caller already has it. The settings are recorded in ``summary.lambda_max_settings``.
    """
    from landscape.hessian import top_eigenpairs

    objective, ckpt, spec = loaded or final_objective(
        summary, samples=samples, seed=seed, device=device, dtype=dtype
    )
    res = top_eigenpairs(objective, 1, which="LA", tol=tol, seed=seed, quiet=quiet)
    summary.lambda_max = float(res.eigenvalues[0])
    summary.lambda_max_samples = objective.num_samples
    summary.lambda_max_source = "computed"
    summary.lambda_max_settings = {
        "checkpoint_digest": weights_digest(ckpt.state_dict),
        "which": "LA",
        "samples": objective.num_samples,
        "subset": spec.subset,
        "sample_seed": spec.seed,
        "split": spec.split,
        "tol": tol,
        "converged": bool(res.converged[0]),
        "dtype": str(objective.dtype).removeprefix("torch."),
        "bn_mode": objective.bn_mode,
    }
