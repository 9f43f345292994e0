"""``lambda_max`` of a run's final checkpoint: a stored ``sharpness.json`` that fits it, or computed.

A ``sharpness.json`` stands for the run only when it was computed from the very weights of
``final.pt`` (their digest), for the largest eigenvalue, in eval mode on the run's training data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from landscape.errors import CheckpointError
from landscape.io.digest import tensors_digest
from landscape.runs.summary import RunSummary


def weights_digest(state_dict: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a checkpoint's tensors as stored (names, shapes, dtypes, bytes): which weights a
    result was computed from, whatever device or dtype it was computed in."""
    return tensors_digest(state_dict.items())


SHARPNESS_FILES = ("sharpness.json", "sharpness/sharpness.json")


def _stored_sharpness_problem(
    doc: Any,
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
    if not isinstance(doc, dict) or not doc.get("eigenvalues"):
        return "it holds no eigenvalues"
    problem = stored_sample_problem(doc, digest, data_name, samples, seed, dtype)
    if problem is not None:
        return problem
    if doc.get("which") != "LA":
        return f"it holds which={doc.get('which')!r} eigenvalues, not the largest ('LA')"
    if tol is not None and not (doc.get("tol") is not None and float(doc["tol"]) <= tol):
        return f"its tolerance {doc.get('tol')!r} is looser than tol={tol}"
    return None


def stored_sample_problem(
    doc: dict[str, Any],
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
    if doc.get("checkpoint_digest") is None:
        return "it has no checkpoint digest (written by an older landscape)"
    if doc["checkpoint_digest"] != digest:
        return "it was computed for other weights (an earlier checkpoint or a previous run)"
    if doc.get("backend", "landscape") != "landscape" or doc.get("bn_mode") != "eval":
        return f"it was computed with backend={doc.get('backend')!r}, bn_mode={doc.get('bn_mode')!r}"
    data = doc.get("data") or {}
    if data.get("split") != "train" or (data_name is not None and data.get("name") != data_name):
        return f"it was computed on data {data.get('name')!r} split {data.get('split')!r}, not the run's training set"
    if samples is not None and (data.get("subset") != samples or data.get("seed") != seed):
        return (
            f"its sample (subset={data.get('subset')!r}, seed={data.get('seed')!r}) is not the one asked "
            f"for (subset={samples}, seed={seed})"
        )
    if dtype is not None and doc.get("dtype") != dtype:
        return f"it was computed in dtype {doc.get('dtype')!r}, not the asked {dtype!r}"
    return None


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
    candidates = [run / name for name in SHARPNESS_FILES if (run / name).is_file()]
    if not candidates:
        return False
    final = run / "final.pt"
    if not final.is_file():
        summary.lambda_max_note = f"run {summary.name!r}: sharpness.json not used, the run has no final.pt"
        return False
    from landscape.models.checkpoints import load_checkpoint

    try:
        ckpt = load_checkpoint(final)
    except CheckpointError as exc:
        summary.lambda_max_note = f"run {summary.name!r}: sharpness.json not used, {exc}"
        return False
    digest = weights_digest(ckpt.state_dict)
    data_name = ckpt.data_spec.name if ckpt.data_spec is not None else None
    reasons = []
    for path in candidates:
        try:
            doc = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            reasons.append(f"{str(path)!r} is unreadable ({exc})")
            continue
        problem = _stored_sharpness_problem(doc, digest, data_name, samples, seed, tol, dtype)
        if problem is not None:
            reasons.append(f"{str(path)!r}: {problem}")
            continue
        data = doc.get("data") or {}
        summary.lambda_max = float(max(doc["eigenvalues"]))
        summary.lambda_max_samples = int(doc["samples"]) if doc.get("samples") is not None else None
        summary.lambda_max_source = str(path)
        summary.lambda_max_settings = {
            "checkpoint_digest": digest,
            "which": "LA",
            "samples": summary.lambda_max_samples,
            "subset": data.get("subset"),
            "sample_seed": data.get("seed"),
            "split": data.get("split"),
            "tol": doc.get("tol"),
            "converged": bool(doc["converged"][0]) if doc.get("converged") else None,
            "dtype": doc.get("dtype"),
            "bn_mode": doc.get("bn_mode"),
        }
        summary.lambda_max_note = None
        return True
    summary.lambda_max_note = f"run {summary.name!r}: lambda_max left empty, " + "; ".join(reasons)
    return False


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
