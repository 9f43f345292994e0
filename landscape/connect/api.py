"""One call from two checkpoints to ``DIR/connect.json``: what ``landscape connect`` runs.

Steps: load A (its model, data and device) and B into the same architecture; optionally align B to A
by weight matching and write ``DIR/<B>_aligned.pt``; evaluate the linear path (and, when aligned, the
unaligned one too); optionally train and evaluate a Bezier or polychain curve, saved as
``DIR/<curve>.pt`` (a checkpoint holding ``theta``) with its per-epoch state in ``DIR/<curve>_state.pt``.
"""

from __future__ import annotations

import numbers
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from landscape.connect.align import align_models
from landscape.connect.curves import CURVES, CurveTraining, curve_coefficients, train_curve
from landscape.connect.paths import difference, evaluate_path, linear_path
from landscape.connect.result import ConnectResult, PathResult
from landscape.data.datasets import DataSpec, load_dataset
from landscape.errors import ConfigError, ResultFileError, check_choice
from landscape.io.digest import settings_digest, tensors_digest
from landscape.io.result_folder import check_out_folder, check_same_settings
from landscape.models.builders import ModelSpec
from landscape.models.checkpoints import Checkpoint, load_model, save_checkpoint
from landscape.objective.core import Objective
from landscape.objective.digest import data_digest
from landscape.objective.inputs import slice_inputs
from landscape.objective.loading import objective_from_checkpoint
from landscape.surface.directions import bn_buffers

BN_POLICIES = ("recalibrate", "states")
ALIGN_METHODS = ("weight-matching",)
RESULT_NAME = "connect.json"


def _check_settings(
    points: int, bn: str | None, curve: str | None, align: str | None, epochs: int, lr: float
) -> None:
    if isinstance(points, bool) or not isinstance(points, numbers.Integral) or points < 2:
        raise ConfigError(f"points={points!r} must be an integer >= 2 (the path's two end points at least)")
    if bn is not None:
        check_choice("bn", bn, BN_POLICIES)
    if curve is not None:
        check_choice("curve", curve, CURVES)
        if epochs < 1:
            raise ConfigError(f"epochs={epochs!r} must be >= 1")
        if not lr > 0:
            raise ConfigError(f"lr={lr!r} must be > 0")
    if align is not None:
        check_choice("align", align, ALIGN_METHODS)


def connect_checkpoints(
    a: str | Path,
    b: str | Path,
    *,
    points: int = 21,
    bn: str | None = None,
    curve: str | None = None,
    epochs: int = 10,
    lr: float = 0.05,
    momentum: float = 0.9,
    align: str | None = None,
    out: str | Path | None = None,
    overwrite: bool = False,
    seed: int = 0,
    model: str | None = None,
    model_kwargs: dict[str, Any] | None = None,
    unsafe_load: bool = False,
    data: str | None = None,
    data_dir: str | None = None,
    split: str | None = None,
    samples: int | None = None,
    batch_size: int = 256,
    device: str | torch.device = "auto",
    dtype: torch.dtype | None = None,
    loss: str | None = None,
    quiet: bool = False,
) -> ConnectResult:
    """Linear path, barriers and optionally an aligned B and a trained curve between two checkpoints.

    Args:
        a: first checkpoint (``alpha = 0``); its model, data and loss define everything.
        b: second checkpoint (``alpha = 1``), same architecture.
        points: number of evenly spaced positions in ``[0, 1]`` (both ends included).
        bn: ``recalibrate`` (default for models with batch norm: running statistics re-estimated on
            the training data at every point) or ``states`` (interpolated with the weights; linear
            paths only, curves always recalibrate). Models without batch norm record ``none``.
        curve: ``bezier`` or ``polychain`` to train a curve through a control point (or ``None``).
        epochs: curve training epochs.
        lr: curve training learning rate (SGD).
        momentum: curve training momentum.
        align: ``weight-matching`` to permute B's hidden units onto A's first (Ainsworth et al. 2023).
        out: folder for ``connect.json``, the aligned checkpoint and the curve (nothing written if ``None``).
        overwrite: replace a ``connect.json`` or curve state made with other settings.
        seed: seed of the data subset, the alignment order, the curve's shuffling and ``t`` draws.
        model: architecture override (both checkpoints are loaded into it).
        model_kwargs: keyword arguments of the model factory.
        unsafe_load: allow unpickling whole modules.
        data: dataset (default: A's).
        data_dir: folder of local dataset files.
        split: ``train`` (default) or ``test``: where losses and accuracies are measured. Batch-norm
            recalibration and curve training always use the training split.
        samples: fixed seeded subset of each split.
        batch_size: batch size of evaluation, recalibration and curve training.
        device: ``auto|cpu|cuda[:N]|mps``.
        dtype: model precision (``None``: as stored).
        loss: the objective's loss (``None``: the checkpoint's, else cross-entropy).
        quiet: no progress bars.

    Returns:
        The result, also written to ``out/connect.json``.

    Raises:
        ConfigError: bad ``points``/``bn``/``curve``/``align``/``epochs``/``lr``, or ``out`` is a file.
        CheckpointError: a checkpoint is missing or B does not fit A's architecture.
        AlignmentError: the architecture cannot be aligned (the layer is named).
        ResultFileError: ``out`` holds a result or a curve state made with other settings.
    """
    _check_settings(points, bn, curve, align, epochs, lr)
    out_dir = Path(out) if out is not None else None
    check_out_folder(out_dir, name="out")
    start = time.perf_counter()
    source = {
        "model": model,
        "model_kwargs": model_kwargs,
        "unsafe_load": unsafe_load,
        "data": data,
        "data_dir": data_dir,
        "split": split,
        "samples": samples,
        "batch_size": batch_size,
        "seed": seed,
        "device": device,
        "dtype": dtype,
        "loss": loss,
    }
    ends = _load_endpoints(a, b, bn, source)
    job = (
        None if curve is None else _CurveJob(curve, epochs, lr, momentum, batch_size, seed, overwrite, quiet)
    )
    settings = _fingerprint_settings(ends, points=points, job=job, align=align, seed=seed)
    fingerprint = settings_digest(settings)
    if out_dir is not None:
        _check_previous(out_dir / RESULT_NAME, settings, fingerprint, overwrite)
    metadata = {
        **_metadata(a, b, ends, points=points, seed=seed),
        "fingerprint": fingerprint,
        "settings": settings,
    }
    alphas = np.linspace(0.0, 1.0, points)

    paths: dict[str, PathResult] = {}
    w_b = ends.w_b
    if align is not None:
        w_b = _align(a, b, align, ends, model=model, seed=seed, out_dir=out_dir, metadata=metadata)
        paths["linear_unaligned"] = ends.line(ends.w_b, alphas, kind="linear_unaligned")
    paths["linear"] = ends.line(w_b, alphas)
    if job is not None:
        curve_fingerprint = settings_digest({**settings, "epochs": None, "points": None})
        paths[job.kind] = _curve_path(job, ends, w_b, alphas, out_dir, curve_fingerprint)
    metadata["seconds"] = time.perf_counter() - start
    result = ConnectResult(paths=paths, metadata=metadata)
    if out_dir is not None:
        result.to_json(out_dir / RESULT_NAME)
    return result


def _fingerprint_settings(
    ends: _Endpoints, *, points: int, job: _CurveJob | None, align: str | None, seed: int
) -> dict[str, Any]:
    """Everything a ``connect.json`` depends on: the end points' and data's digests and the settings."""
    return {
        "a": tensors_digest(sorted(ends.w_a.items())),
        "b": tensors_digest(sorted(ends.w_b.items())),
        "data": data_digest(ends.objective),
        "points": points,
        "bn": ends.bn,
        "curve": job.kind if job else None,
        "epochs": job.epochs if job else None,
        "lr": job.lr if job else None,
        "momentum": job.momentum if job else None,
        "align": align,
        "seed": seed,
        "dtype": str(ends.objective.dtype),
    }


@dataclass
class _Endpoints:
    """A and B loaded into one architecture, with what every path between them needs.

    Attributes:
        objective: A's model on the evaluated data (its parameters are moved along the paths).
        ckpt_a: A's checkpoint.
        spec: the evaluated data.
        net_b: B's model (holds the aligned B once it is written).
        ckpt_b: B's checkpoint.
        bn: the batch-norm policy used: ``recalibrate``, ``states`` or ``none``.
        train_spec: the training split of ``spec``.
        train_objective: the loss on the training split (recalibration and curve training read it).
        names: what moves along a path: the parameters, and the batch-norm buffers in ``states`` mode.
        w_a: copies of A's values of ``names``.
        w_b: copies of B's values of ``names``, as loaded (not aligned).
    """

    objective: Objective
    ckpt_a: Checkpoint
    spec: DataSpec
    net_b: nn.Module
    ckpt_b: Checkpoint
    bn: str
    train_spec: DataSpec
    train_objective: Objective
    names: list[str]
    w_a: dict[str, torch.Tensor]
    w_b: dict[str, torch.Tensor]

    @property
    def recalibration(self) -> Objective | None:
        """The objective batch norm is recalibrated on at each point (``None`` unless ``recalibrate``)."""
        return self.train_objective if self.bn == "recalibrate" else None

    def line(self, w_end: dict[str, torch.Tensor], alphas: np.ndarray, kind: str = "linear") -> PathResult:
        """The straight path from A to ``w_end``."""
        return linear_path(
            self.objective, self.w_a, w_end, alphas, kind=kind, recalibration=self.recalibration, bn=self.bn
        )


def _load_endpoints(a: str | Path, b: str | Path, bn: str | None, source: dict[str, Any]) -> _Endpoints:
    """Load A with its data (``source``: the keyword arguments of ``objective_from_checkpoint``) and
    B into A's architecture; settle the batch-norm policy and copy the end points."""
    objective, ckpt_a, spec = objective_from_checkpoint(a, **source)
    net_b, ckpt_b = _load_b(b, objective, ckpt_a, source)
    bn_used = _bn_policy(objective, bn)
    train_spec, train_objective = _training_objective(objective, spec, source["batch_size"])
    names, w_a, w_b = _end_points(objective, net_b, bn_used)
    return _Endpoints(
        objective, ckpt_a, spec, net_b, ckpt_b, bn_used, train_spec, train_objective, names, w_a, w_b
    )


def _load_b(
    b: str | Path, objective: Objective, ckpt_a: Checkpoint, source: dict[str, Any]
) -> tuple[nn.Module, Checkpoint]:
    """B in A's architecture (A's recorded model spec wins over ``model``), on A's device and dtype."""
    model_spec = ckpt_a.model_spec
    load_b = (
        {"model": model_spec.name, "model_kwargs": model_spec.kwargs}
        if model_spec
        else {"model": source["model"], "model_kwargs": source["model_kwargs"]}
    )
    net_b, ckpt_b = load_model(b, **load_b, unsafe_load=source["unsafe_load"])
    return net_b.to(device=objective.device, dtype=objective.dtype), ckpt_b


def _bn_policy(objective: Objective, bn: str | None) -> str:
    """``states``, ``recalibrate`` (the default with batch norm) or ``none`` (no batch norm).

    Raises:
        ConfigError: ``bn='states'`` for a model without batch norm.
    """
    has_bn = bool(bn_buffers(objective.model))
    if bn == "states" and not has_bn:
        raise ConfigError("bn='states' needs a model with batch norm; this one has none (omit bn)")
    return ("states" if bn == "states" else "recalibrate") if has_bn else "none"


def _training_objective(objective: Objective, spec: DataSpec, batch_size: int) -> tuple[DataSpec, Objective]:
    """The training split's spec and objective: recalibration and curve training read it, whatever
    split is evaluated (the evaluated objective itself when that is the training split)."""
    train_spec = replace(spec, split="train")
    if train_spec == spec:
        return train_spec, objective
    return train_spec, Objective(
        objective.model,
        load_dataset(train_spec),
        batch_size=batch_size,
        device=objective.device,
        loss_fn=objective.loss_fn,
    )


def _end_points(
    objective: Objective, net_b: nn.Module, bn_used: str
) -> tuple[list[str], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The names that move along the path and copies of their values in A and B."""
    names = list(objective.param_names)
    if bn_used == "states":
        names += list(bn_buffers(objective.model))
    live_a = {**dict(zip(objective.param_names, objective.params)), **bn_buffers(objective.model)}
    w_a = {n: live_a[n].detach().clone() for n in names}
    state_b = dict(net_b.state_dict())
    w_b = {n: state_b[n].detach().clone() for n in names}
    return names, w_a, w_b


_BN_NOTES = {
    "recalibrate": "running statistics re-estimated on the training data at every point",
    "states": "running statistics interpolated with the weights (curves recalibrate)",
    "none": "the model has no batch norm",
}


def _metadata(a: str | Path, b: str | Path, ends: _Endpoints, *, points: int, seed: int) -> dict[str, Any]:
    """What ``connect.json`` records about its inputs (fingerprint, alignment and timing come after)."""
    model_spec = ends.ckpt_a.model_spec
    return {
        "a": str(a),
        "b": str(b),
        "model": model_spec.to_dict() if model_spec else None,
        "data": ends.spec.to_dict(),
        "split": ends.spec.split,
        "points": points,
        "bn": ends.bn,
        "bn_note": _BN_NOTES[ends.bn],
        "seed": seed,
        "objective": ends.objective.metadata(),
    }


def _align(
    a: str | Path,
    b: str | Path,
    align: str,
    ends: _Endpoints,
    *,
    model: str | None,
    seed: int,
    out_dir: Path | None,
    metadata: dict[str, Any],
) -> dict[str, torch.Tensor]:
    """B permuted onto A by weight matching; records the alignment in ``metadata`` and, with an
    ``out_dir``, writes the aligned B as ``<B>_aligned.pt`` (``ends.net_b`` then holds it)."""
    x_example = next(iter(ends.objective.batches()))[0]
    alignment = align_models(ends.objective.model, ends.net_b, slice_inputs(x_example, 0, 64), seed=seed)
    metadata["alignment"] = alignment.to_dict()
    if out_dir is not None:
        aligned_path = out_dir / f"{Path(b).stem}_aligned.pt"
        ckpt_b = ends.ckpt_b
        ends.net_b.load_state_dict(alignment.state_dict)
        save_checkpoint(
            aligned_path,
            ends.net_b,
            model_spec=ends.ckpt_a.model_spec or ModelSpec(str(model)),
            data_spec=ckpt_b.data_spec,
            step=ckpt_b.step,
            epoch=ckpt_b.epoch,
            metrics=ckpt_b.metrics,
            extra={**ckpt_b.extra, "aligned_to": str(a), "aligned_from": str(b), "align": align},
        )
        metadata["b_aligned"] = str(aligned_path)
    return {n: alignment.state_dict[n].detach().clone() for n in ends.names}


def _check_previous(path: Path, settings: dict[str, Any], fingerprint: str, overwrite: bool) -> None:
    """Refuse a ``connect.json`` made with other settings or checkpoints (naming what differs when
    it records its settings: results written before they did record only the fingerprint)."""
    if overwrite or not path.exists():
        return
    try:
        previous = ConnectResult.from_json(path)
    except ResultFileError:
        raise ResultFileError(
            f"{str(path)!r} exists and is not a connect result; pass overwrite=True"
        ) from None
    stored = previous.metadata.get("settings")
    differs = " (differs in: {differences})" if isinstance(stored, dict) else ""
    check_same_settings(
        path,
        stored if isinstance(stored, dict) else {},
        settings if isinstance(stored, dict) else {},
        template="{path} holds a result computed with other settings or checkpoints"
        + differs
        + "; use another output folder or pass overwrite=True",
        digests=(str(previous.metadata.get("fingerprint")), fingerprint),
    )


@dataclass(frozen=True)
class _CurveJob:
    """The settings of one curve's training."""

    kind: str
    epochs: int
    lr: float
    momentum: float
    batch_size: int
    seed: int
    overwrite: bool
    quiet: bool


def _curve_path(
    job: _CurveJob,
    ends: _Endpoints,
    w_b: dict[str, torch.Tensor],
    ts: np.ndarray,
    out_dir: Path | None,
    fingerprint: str,
) -> PathResult:
    """Train the curve's control point on the training data, evaluate it, save it as a checkpoint.

    ``fingerprint`` is what a resumed curve state must have been made with (the settings but the
    number of points and of epochs: more epochs continue a shorter run).
    """
    objective = ends.objective
    params = list(objective.param_names)
    pa = {n: ends.w_a[n] for n in params}
    pb = {n: w_b[n] for n in params}
    trained = _train_control_point(
        job, objective, load_dataset(ends.train_spec), pa, pb, out_dir, fingerprint
    )
    # curves always recalibrate batch norm (states mode interpolates only along straight lines)
    recalibration = ends.train_objective if ends.bn != "none" else None
    path = evaluate_path(
        objective,
        pa,
        [difference(pa, trained.theta), difference(pa, pb)],
        [curve_coefficients(job.kind, t) for t in ts],
        ts,
        kind=job.kind,
        recalibration=recalibration,
        bn="recalibrate" if recalibration is not None else "none",
    )
    path.passes += trained.passes
    path.seconds += trained.seconds
    path.info = {
        "epochs": trained.epochs_done,
        "resumed_from_epoch": trained.resumed_from_epoch,
        "lr": job.lr,
        "momentum": job.momentum,
        "batch_size": job.batch_size,
        "train_loss": trained.train_loss,
        "training_passes": trained.passes,
    }
    if out_dir is not None:
        ckpt_a = ends.ckpt_a
        theta_path = out_dir / f"{job.kind}.pt"
        path.info["checkpoint"] = str(
            _save_theta(
                theta_path,
                objective,
                trained.theta,
                job.kind,
                ckpt_a.model_spec,
                ckpt_a.data_spec,
                recalibration,
            )
        )
    return path


def _train_control_point(
    job: _CurveJob,
    objective: Objective,
    train_dataset: Any,
    pa: dict[str, torch.Tensor],
    pb: dict[str, torch.Tensor],
    out_dir: Path | None,
    fingerprint: str,
) -> CurveTraining:
    """:func:`train_curve` with its state in ``out_dir/<kind>_state.pt`` (removed first on overwrite)."""
    state_path = out_dir / f"{job.kind}_state.pt" if out_dir is not None else None
    if state_path is not None and job.overwrite:
        state_path.unlink(missing_ok=True)
    return train_curve(
        objective.model,
        pa,
        pb,
        train_dataset,
        kind=job.kind,
        epochs=job.epochs,
        lr=job.lr,
        momentum=job.momentum,
        batch_size=job.batch_size,
        seed=job.seed,
        loss_fn=objective.loss_fn,
        state_path=state_path,
        fingerprint=fingerprint,
        quiet=job.quiet,
    )


def _save_theta(
    path: Path,
    objective: Objective,
    theta: dict[str, torch.Tensor],
    kind: str,
    model_spec: ModelSpec | None,
    data_spec: Any,
    recalibration: Objective | None,
) -> Path:
    """The control point as an ordinary checkpoint (batch norm recalibrated at ``theta``)."""
    from landscape.surface.grid import PointEvaluator

    base = {n: p.detach().clone() for n, p in zip(objective.param_names, objective.params)}
    evaluator = PointEvaluator(
        recalibration if recalibration is not None else objective,
        [difference(base, theta)],
        base=base,
        bn="recalibrate" if recalibration is not None else "fixed",
    )
    with evaluator:
        evaluator.set_point([1.0])
        if recalibration is not None:
            evaluator.recalibrate()
        return save_checkpoint(
            path,
            objective.model,
            model_spec=model_spec or ModelSpec("unknown"),
            data_spec=data_spec,
            extra={"curve": kind, "control_point": True},
        )
