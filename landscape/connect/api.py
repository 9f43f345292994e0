"""One call from two checkpoints to ``DIR/connect.json``: what ``landscape connect`` runs.

Steps: load A (its model, data and device) and B into the same architecture; optionally align B to A
by weight matching and write ``DIR/<B>_aligned.pt``; evaluate the linear path (and, when aligned, the
unaligned one too); optionally train and evaluate a Bezier or polychain curve, saved as
``DIR/<curve>.pt`` (a checkpoint holding ``theta``) with its per-epoch state in ``DIR/<curve>_state.pt``.
"""

from __future__ import annotations

import numbers
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from landscape.connect.align import align_models
from landscape.connect.curves import CURVES, curve_coefficients, train_curve
from landscape.connect.paths import difference, evaluate_path, linear_path
from landscape.connect.result import ConnectResult, PathResult
from landscape.errors import ConfigError, ResultFileError, check_choice
from landscape.io.checkpoints import load_model, save_checkpoint
from landscape.io.data import load_dataset
from landscape.io.digest import data_digest, settings_digest, tensors_digest
from landscape.io.models import ModelSpec
from landscape.loading import objective_from_checkpoint
from landscape.objective import Objective
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


def _check_out(out: Path | None) -> None:
    if out is not None and out.exists() and not out.is_dir():
        raise ConfigError(
            f"out={str(out)!r} exists and is not a folder; give a folder (it is created if missing)"
        )


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
    _check_out(out_dir)
    start = time.perf_counter()
    objective, ckpt_a, spec = objective_from_checkpoint(
        a,
        model=model,
        model_kwargs=model_kwargs,
        unsafe_load=unsafe_load,
        data=data,
        data_dir=data_dir,
        split=split,
        samples=samples,
        batch_size=batch_size,
        seed=seed,
        device=device,
        dtype=dtype,
    )
    model_spec = ckpt_a.model_spec
    load_b = (
        {"model": model_spec.name, "model_kwargs": model_spec.kwargs}
        if model_spec
        else {"model": model, "model_kwargs": model_kwargs}
    )
    net_b, ckpt_b = load_model(b, **load_b, unsafe_load=unsafe_load)
    net_b = net_b.to(device=objective.device, dtype=objective.dtype)

    has_bn = bool(bn_buffers(objective.model))
    if bn == "states" and not has_bn:
        raise ConfigError("bn='states' needs a model with batch norm; this one has none (omit bn)")
    bn_used = ("states" if bn == "states" else "recalibrate") if has_bn else "none"

    # Recalibration and curve training read the training split, whatever split is evaluated.
    train_spec = replace(spec, split="train")
    if train_spec == spec:
        train_objective = objective
    else:
        train_objective = Objective(
            objective.model, load_dataset(train_spec), batch_size=batch_size, device=objective.device
        )
    recalibration = train_objective if bn_used == "recalibrate" else None

    names = list(objective.param_names)
    if bn_used == "states":
        names += list(bn_buffers(objective.model))
    live_a = {**dict(zip(objective.param_names, objective.params)), **bn_buffers(objective.model)}
    w_a = {n: live_a[n].detach().clone() for n in names}
    state_b = dict(net_b.state_dict())
    w_b_original = {n: state_b[n].detach().clone() for n in names}

    settings = {
        "a": tensors_digest(sorted(w_a.items())),
        "b": tensors_digest(sorted(w_b_original.items())),
        "data": data_digest(objective),
        "points": points,
        "bn": bn_used,
        "curve": curve,
        "epochs": epochs if curve else None,
        "lr": lr if curve else None,
        "momentum": momentum if curve else None,
        "align": align,
        "seed": seed,
        "dtype": str(objective.dtype),
    }
    fingerprint = settings_digest(settings)
    if out_dir is not None:
        _check_previous(out_dir / RESULT_NAME, fingerprint, overwrite)

    metadata: dict[str, Any] = {
        "a": str(a),
        "b": str(b),
        "model": model_spec.to_dict() if model_spec else None,
        "data": spec.to_dict(),
        "split": spec.split,
        "points": points,
        "bn": bn_used,
        "bn_note": {
            "recalibrate": "running statistics re-estimated on the training data at every point",
            "states": "running statistics interpolated with the weights (curves recalibrate)",
            "none": "the model has no batch norm",
        }[bn_used],
        "seed": seed,
        "objective": objective.metadata(),
        "fingerprint": fingerprint,
    }
    paths: dict[str, PathResult] = {}
    alphas = np.linspace(0.0, 1.0, points)

    w_b = w_b_original
    if align is not None:
        x_example = next(iter(objective.batches()))[0]
        alignment = align_models(objective.model, net_b, x_example[:64], seed=seed)
        w_b = {n: alignment.state_dict[n].detach().clone() for n in names}
        metadata["alignment"] = alignment.to_dict()
        if out_dir is not None:
            aligned_path = out_dir / f"{Path(b).stem}_aligned.pt"
            net_b.load_state_dict(alignment.state_dict)
            save_checkpoint(
                aligned_path,
                net_b,
                model_spec=model_spec or ModelSpec(str(model)),
                data_spec=ckpt_b.data_spec,
                step=ckpt_b.step,
                epoch=ckpt_b.epoch,
                metrics=ckpt_b.metrics,
                extra={**ckpt_b.extra, "aligned_to": str(a), "aligned_from": str(b), "align": align},
            )
            metadata["b_aligned"] = str(aligned_path)
        paths["linear_unaligned"] = linear_path(
            objective,
            w_a,
            w_b_original,
            alphas,
            kind="linear_unaligned",
            recalibration=recalibration,
            bn=bn_used,
        )
    paths["linear"] = linear_path(objective, w_a, w_b, alphas, recalibration=recalibration, bn=bn_used)

    if curve is not None:
        paths[curve] = _curve_path(
            curve,
            objective,
            train_objective,
            train_spec_dataset=load_dataset(train_spec),
            w_a=w_a,
            w_b=w_b,
            ts=alphas,
            has_bn=has_bn,
            epochs=epochs,
            lr=lr,
            momentum=momentum,
            batch_size=batch_size,
            seed=seed,
            fingerprint=settings_digest({**settings, "epochs": None, "points": None}),
            out_dir=out_dir,
            overwrite=overwrite,
            model_spec=model_spec,
            ckpt_data=ckpt_a.data_spec,
            quiet=quiet,
        )
    metadata["seconds"] = time.perf_counter() - start
    result = ConnectResult(paths=paths, metadata=metadata)
    if out_dir is not None:
        result.to_json(out_dir / RESULT_NAME)
    return result


def _check_previous(path: Path, fingerprint: str, overwrite: bool) -> None:
    if overwrite or not path.exists():
        return
    try:
        previous = ConnectResult.from_json(path)
    except ResultFileError:
        raise ResultFileError(
            f"{str(path)!r} exists and is not a connect result; pass overwrite=True"
        ) from None
    if previous.metadata.get("fingerprint") != fingerprint:
        raise ResultFileError(
            f"{str(path)!r} holds a result computed with other settings or checkpoints; "
            "use another output folder or pass overwrite=True"
        )


def _curve_path(
    kind: str,
    objective: Objective,
    train_objective: Objective,
    *,
    train_spec_dataset: Any,
    w_a: dict[str, torch.Tensor],
    w_b: dict[str, torch.Tensor],
    ts: np.ndarray,
    has_bn: bool,
    epochs: int,
    lr: float,
    momentum: float,
    batch_size: int,
    seed: int,
    fingerprint: str,
    out_dir: Path | None,
    overwrite: bool,
    model_spec: ModelSpec | None,
    ckpt_data: Any,
    quiet: bool,
) -> PathResult:
    """Train the curve's control point on the training data, evaluate it, save it as a checkpoint."""
    params = list(objective.param_names)
    pa = {n: w_a[n] for n in params}
    pb = {n: w_b[n] for n in params}
    state_path = out_dir / f"{kind}_state.pt" if out_dir is not None else None
    if state_path is not None and overwrite:
        state_path.unlink(missing_ok=True)
    trained = train_curve(
        objective.model,
        pa,
        pb,
        train_spec_dataset,
        kind=kind,
        epochs=epochs,
        lr=lr,
        momentum=momentum,
        batch_size=batch_size,
        seed=seed,
        loss_fn=objective.loss_fn,
        state_path=state_path,
        fingerprint=fingerprint,
        quiet=quiet,
    )
    coefficients = [curve_coefficients(kind, t) for t in ts]
    recalibration = train_objective if has_bn else None
    path = evaluate_path(
        objective,
        pa,
        [difference(pa, trained.theta), difference(pa, pb)],
        coefficients,
        ts,
        kind=kind,
        recalibration=recalibration,
        bn="recalibrate" if has_bn else "none",
    )
    path.passes += trained.passes
    path.seconds += trained.seconds
    path.info = {
        "epochs": trained.epochs_done,
        "resumed_from_epoch": trained.resumed_from_epoch,
        "lr": lr,
        "momentum": momentum,
        "batch_size": batch_size,
        "train_loss": trained.train_loss,
        "training_passes": trained.passes,
    }
    if out_dir is not None:
        path.info["checkpoint"] = str(
            _save_theta(
                out_dir / f"{kind}.pt", objective, trained.theta, kind, model_spec, ckpt_data, recalibration
            )
        )
    return path


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
