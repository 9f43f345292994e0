"""The training loop behind ``landscape train``: runs that the analysis commands read.

The loop is the usual one (the seed documents' Min-Min and MSAM-ScheduleFree loops)::

    for epoch in 1..epochs:
        for each batch of the epoch's seeded order (augmented if asked):     # gd: one full batch
            loss = training_step(optimizer, model, loss_fn, batch, next_batch)   # any optimizer
            log the step (loss, lr used, SAM-family statistics)
            measure the sharpness when due; run the step hooks; step the lr schedule
        every eval_every epochs and at the last:
            with evaluation_mode(optimizer):                                  # MSAM / schedule-free
                evaluate train and test sets, save the checkpoint
            run the epoch hooks; write the logs, then the resume state

Every random draw (initialization, the per-epoch order of the examples, the augmentation, dropout,
probes, the tracking sample) comes from ``config.seed``; the order and the augmentation of epoch
``e`` depend only on ``(seed, e)`` and the schedule and tracker states are in the resume state, so a
resumed run is bit-identical to an uninterrupted one.

Losses: the optimizer steps on ``config.loss`` (with ``label_smoothing``); evaluation, the logged
train/test losses and the sharpness tracking use ``config.loss`` without smoothing, on non-augmented
data, which is what the analysis commands measure on the checkpoints.

Items may be dicts in the Hugging Face convention (``input_ids``, ``attention_mask``, ``labels``, ...):
the model is called as ``model(**inputs)`` and its ``logits`` are scored. For token labels the
cross-entropy is the mean over counted tokens (-100 is padding), shifted by one position when the
model is a causal language model, in the steps as in the evaluation (the objective's rule,
:mod:`landscape.objective.tokens`). ``clip_grad_norm`` clips the gradient of every pass of a step to
that global 2-norm before the optimizer uses it (SAM: the ascent gradient and the one it steps with).

The run folder and its resume policy are :mod:`landscape.training.run_folder`'s; the settings and
their resolution :mod:`landscape.training.config`'s.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from landscape.data.datasets import input_shape, load_dataset
from landscape.device import dtype_name, resolve_device
from landscape.errors import ConfigError, DataError, DivergenceWarning, ResultFileError
from landscape.io.atomic import atomic_write_json
from landscape.models.builders import build_model
from landscape.models.checkpoints import save_checkpoint
from landscape.objective.core import Objective
from landscape.objective.losses import CrossEntropy, resolve_loss
from landscape.objective.tokens import is_causal_lm
from landscape.optim.factory import (
    evaluation_mode,
    make_optimizer,
    run_arguments,
    step_batch_sizes,
    step_statistics,
    training_step,
)
from landscape.progress import Progress
from landscape.training.batches import SeededBatches, derived_seed, load_test_split
from landscape.training.config import (
    AUGMENT_KEY,
    FULL_BATCH,
    TrainConfig,
    checkpoint_hparams,
    factory_name,
    recorded_settings,
    resolve_config,
)
from landscape.training.full_batch import full_batch_objective, full_batch_step
from landscape.training.recipes import augment_batch, make_loss, make_scheduler, warmup_steps_for
from landscape.training.run_folder import RunFolder
from landscape.training.sharpness_tracking import SharpnessTracker, tracking_objective


@dataclass
class TrainResult:
    """Where the run is and how it ended."""

    out_dir: Path
    final_checkpoint: Path
    epochs_done: int
    steps_done: int
    resumed_from_epoch: int
    final_metrics: dict[str, float]
    diverged: bool = False


# a run whose final train loss is above this multiple of its epoch-0 loss (or not finite) diverged
DIVERGENCE_FACTOR = 10.0


@dataclass
class StepEnd:
    """What a step hook sees after each optimizer step.

    ``row`` is the ``steps.csv`` row of the step (epoch, step, loss, lr and the SAM-family statistics).
    """

    epoch: int
    step: int
    loss: float
    row: dict[str, Any]
    model: nn.Module
    optimizer: torch.optim.Optimizer


@dataclass
class EpochEnd:
    """What an epoch hook sees after an epoch's evaluation, before its logs and resume state are written.

    ``metrics`` is the ``metrics.csv`` row of the epoch; the model holds the evaluated (and saved)
    parameters only inside ``evaluation_mode(optimizer)``.
    """

    epoch: int
    step: int
    metrics: dict[str, Any]
    model: nn.Module
    optimizer: torch.optim.Optimizer
    folder: RunFolder


StepHook = Callable[[StepEnd], None]
EpochHook = Callable[[EpochEnd], None]


@dataclass
class _Run:
    """A run whose settings have all been checked: nothing is written before this exists."""

    config: TrainConfig  # resolved
    settings: dict[str, Any]  # what config.json records
    folder: RunFolder
    model: nn.Module
    optimizer: torch.optim.Optimizer
    loss_fn: nn.Module  # what the optimizer steps on (label smoothing included)
    batches: SeededBatches
    small: int  # examples of a step's (first) batch
    large: int  # examples of its second, disjoint batch (Min-Min), else 0
    steps_per_epoch: int
    eval_train: Objective
    eval_test: Objective | None
    full_batch: Objective | None  # gd: the whole training set, stepped on once per epoch
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    tracker: SharpnessTracker | None

    @property
    def total_steps(self) -> int:
        return self.config.epochs * self.steps_per_epoch

    def evaluated(self, epoch: int) -> bool:
        """Whether ``epoch`` is evaluated (and logged, and may be checkpointed): 0, every N-th, the last."""
        return epoch % self.config.eval_every == 0 or epoch == self.config.epochs

    def resume_extra(self) -> dict[str, Any]:
        """State beyond the model's and the optimizer's that an exact resume needs."""
        extra: dict[str, Any] = {}
        if self.scheduler is not None:
            extra["scheduler"] = self.scheduler.state_dict()
        if self.tracker is not None:
            extra["tracker"] = self.tracker.state_dict()
        return extra

    def load_resume_extra(self, extra: dict[str, Any]) -> None:
        for key, part in (("scheduler", self.scheduler), ("tracker", self.tracker)):
            if part is None:
                continue
            if key not in extra:
                raise ResultFileError(
                    f"{str(self.folder.state)!r} has no {key} state, so the run cannot be resumed; "
                    "pass overwrite=True to start over"
                )
            try:
                part.load_state_dict(extra[key])
            except (KeyError, TypeError, ValueError) as exc:
                raise ResultFileError(
                    f"{str(self.folder.state)!r} holds a damaged {key} state ({exc}); pass overwrite=True "
                    "to start over"
                ) from None


def train(
    config: TrainConfig,
    out_dir: str | Path,
    *,
    device: str | torch.device = "auto",
    dtype: torch.dtype = torch.float32,
    overwrite: bool = False,
    quiet: bool = False,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    step_hooks: Sequence[StepHook] = (),
    epoch_hooks: Sequence[EpochHook] = (),
) -> TrainResult:
    """Train ``config.model`` on ``config.data`` with ``config.optimizer``; resume if interrupted.

    Everything that can be wrong with the settings (values, device, data, model, optimizer, one
    step's batch) is checked before ``out_dir`` is created or anything is written in it, so a
    failed call leaves nothing behind. ``config`` is not changed: the run uses and records a resolved
    copy (model input size and class count, the method's default ``rho`` and option defaults, see
    :func:`~landscape.training.config.resolve_config`); ``config.json`` and every checkpoint hold
    those values.

    Args:
        config: the run's settings.
        out_dir: run folder (created). If it holds a run with the same resolved config, training
            resumes from its last completed epoch; a run with another config is refused unless
            ``overwrite``.
        device: ``auto|cpu|cuda[:N]|mps``.
        dtype: parameter dtype.
        overwrite: start over even if ``out_dir`` holds another run.
        quiet: no progress bar.
        on_epoch: called after each evaluated epoch, once its resume state is written, with
            ``(epoch, metrics)``.
        step_hooks: called after each optimizer step (and its sharpness measurement) with a
            :class:`StepEnd`.
        epoch_hooks: called after each evaluated epoch's evaluation with an :class:`EpochEnd`,
            before its logs.

    Raises:
        ConfigError: a bad setting (named by its ``TrainConfig`` field or parameter).
        DataError: the training data cannot be read or is empty.
        ModelError: the model cannot be built.
        ResultFileError: ``out_dir`` holds another run, or a run whose files cannot be resumed.
    """
    run = _prepare(config, out_dir, device, dtype)
    cfg = run.config
    resume = run.folder.open(
        run.settings, run.model, run.optimizer, overwrite=overwrite, eval_every=cfg.eval_every
    )
    if resume is None:
        start_epoch, step, step_rows = 0, 0, []
        epoch_rows = [_evaluate_and_save(run, 0, 0)]
        _track(run, 0, 0)
        _write_logs(run, step_rows, epoch_rows)
    else:
        start_epoch, step = resume.epoch, resume.step
        step_rows, epoch_rows = resume.step_rows, resume.epoch_rows
        run.load_resume_extra(resume.extra)

    run.model.train()
    total = (cfg.epochs - start_epoch) * run.steps_per_epoch
    with Progress(total, f"train {cfg.optimizer}", quiet=quiet) as bar:
        note = ""
        for epoch in range(start_epoch + 1, cfg.epochs + 1):
            for row in _train_epoch(run, epoch, step):
                step = row["step"]
                step_rows.append(row)
                tracked = _track(run, step, epoch)
                if tracked is not None:
                    note = SharpnessTracker.progress_note(tracked)
                for step_hook in step_hooks:
                    step_hook(StepEnd(epoch, step, row["loss"], row, run.model, run.optimizer))
                bar.update()
                bar.set_postfix(loss=f"{row['loss']:.4f}", **({"sharpness": note} if note else {}))
            if not run.evaluated(epoch):
                continue
            metrics = _evaluate_and_save(run, epoch, step)
            for epoch_hook in epoch_hooks:
                epoch_hook(EpochEnd(epoch, step, metrics, run.model, run.optimizer, run.folder))
            epoch_rows.append(metrics)
            _write_logs(run, step_rows, epoch_rows)  # logs first: a crash then replays the epoch
            run.folder.write_state(epoch, step, run.model, run.optimizer, run.resume_extra())
            if on_epoch is not None:
                on_epoch(epoch, metrics)

    final_epoch = max(cfg.epochs, start_epoch)
    final_metrics = {k: float(v) for k, v in epoch_rows[-1].items()} if epoch_rows else {}
    run.folder.finish(final_epoch, step, final_metrics)
    diverged = _record_divergence(run.folder.summary, epoch_rows)
    return TrainResult(
        out_dir=run.folder.path,
        final_checkpoint=run.folder.final,
        epochs_done=final_epoch,
        steps_done=step,
        resumed_from_epoch=start_epoch,
        final_metrics=final_metrics,
        diverged=diverged,
    )


def diverged_message(epoch_rows: Sequence[Mapping[str, Any]]) -> str | None:
    """Why the run diverged (one line), or ``None``: the final train loss is not finite or above
    :data:`DIVERGENCE_FACTOR` times the epoch-0 one (the untrained weights')."""
    if len(epoch_rows) < 2:
        return None
    first, last = float(epoch_rows[0]["train_loss"]), float(epoch_rows[-1]["train_loss"])
    if not math.isfinite(first):  # nothing to compare with
        return None
    if not math.isfinite(last):
        return f"the final train loss is {last}: training diverged; lower lr"
    if last > DIVERGENCE_FACTOR * first:
        return (
            f"the final train loss {last:.4g} is more than {DIVERGENCE_FACTOR:g}x the epoch-0 loss "
            f"{first:.4g}: training diverged and its curvature means nothing; lower lr"
        )
    return None


def _record_divergence(summary: Path, epoch_rows: Sequence[Mapping[str, Any]]) -> bool:
    """Warn (:class:`DivergenceWarning`) when the run diverged; ``diverged`` in ``summary.json`` either way."""
    message = diverged_message(epoch_rows)
    if message is not None:
        warnings.warn(message, DivergenceWarning, stacklevel=3)
    recorded = json.loads(summary.read_text())
    recorded["diverged"] = message is not None
    atomic_write_json(summary, recorded)
    return message is not None


def _prepare(
    config: TrainConfig, out_dir: str | Path, device: str | torch.device, dtype: torch.dtype
) -> _Run:
    """Check every setting and build the run's objects; nothing is written."""
    config.validate()
    folder = RunFolder(out_dir)
    folder.check_place()
    dev = resolve_device(device)
    eval_loss = resolve_loss(config.loss)
    train_loss = make_loss(config.label_smoothing) if config.label_smoothing else eval_loss
    train_ds = load_dataset(config.data)
    if len(train_ds) == 0:  # type: ignore[arg-type]
        raise DataError(f"data={config.data.name!r} holds no training examples; give a non-empty dataset")
    if config.augment:
        _check_augmentable(config.data.name, train_ds)
    if config.label_smoothing and _has_token_labels(train_ds):
        raise ConfigError(
            f"label_smoothing={config.label_smoothing!r} applies to class labels, but data={config.data.name!r} "
            "has token labels (one per position); set label_smoothing=0"
        )
    test_ds = load_test_split(config.data)
    cfg = resolve_config(config, train_ds)

    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model).to(device=dev, dtype=dtype)
    # a causal language model is stepped on, and logged with, its shifted token mean
    eval_loss, train_loss = _decided_loss(eval_loss, model), _decided_loss(train_loss, model)
    optimizer = _build_optimizer(cfg, model, train_ds, train_loss, user_options=config.optimizer_kwargs)
    batches = SeededBatches(train_ds, dev, dtype)
    full_batch = None
    if cfg.optimizer == FULL_BATCH:
        # batch_size only splits the one full-batch gradient into pieces that fit in memory
        full_batch = full_batch_objective(model, train_ds, loss_fn=train_loss, batch_size=cfg.batch_size)
        small, large, steps_per_epoch = batches.n, 0, 1
    else:
        small, large = step_batch_sizes(optimizer, cfg.batch_size)
        steps_per_epoch = batches.n // (small + large)
    if steps_per_epoch == 0:
        fix = "lower small_batch_size/large_batch_size in optimizer_kwargs" if large else "lower batch_size"
        raise ConfigError(
            f"the training set has {batches.n} example(s), fewer than one step's batch ({small + large}); "
            f"{fix} or use more data"
        )
    scheduler = _build_scheduler(cfg, optimizer, steps_per_epoch)
    tracker = None
    if cfg.track_sharpness is not None:
        assert cfg.track_samples is not None  # resolved
        sample = tracking_objective(
            model,
            train_ds,
            loss_fn=eval_loss,
            num_samples=cfg.track_samples,
            seed=cfg.seed,
            batch_size=cfg.eval_batch_size,
        )
        tracker = SharpnessTracker(
            sample, every=cfg.track_sharpness, k=cfg.track_top_k, seed=cfg.seed, overlap=cfg.track_overlap
        )

    def objective(ds: Dataset) -> Objective:
        return Objective(
            model, ds, loss_fn=eval_loss, batch_size=cfg.eval_batch_size, device=dev, dtype=dtype
        )

    return _Run(
        config=cfg,
        settings=recorded_settings(cfg, dtype_name(dtype)),
        folder=folder,
        model=model,
        optimizer=optimizer,
        loss_fn=train_loss,
        batches=batches,
        small=small,
        large=large,
        steps_per_epoch=steps_per_epoch,
        eval_train=objective(train_ds),
        eval_test=objective(test_ds) if test_ds is not None else None,
        full_batch=full_batch,
        scheduler=scheduler,
        tracker=tracker,
    )


def _check_augmentable(name: str, train_ds: Dataset) -> None:
    """Augmentation crops image tensors: refuse dict items and examples not shaped ``(C, H, W)``."""
    what = "dict items" if isinstance(train_ds[0], Mapping) else None
    if what is None and len(input_shape(train_ds)) != 3:
        what = f"examples shaped {tuple(input_shape(train_ds))}"
    if what is not None:
        raise ConfigError(
            f"augment=True needs image data (examples shaped (C, H, W)), but data={name!r} "
            f"has {what}; turn augment off for this data"
        )


def _has_token_labels(train_ds: Dataset) -> bool:
    """Whether the items' labels have a sequence axis (integer labels per position: a token objective)."""
    item = train_ds[0]
    labels = torch.as_tensor(item["labels"] if isinstance(item, Mapping) else item[1])
    return labels.dim() >= 1 and not labels.is_floating_point()


def _decided_loss(loss_fn: nn.Module, model: nn.Module) -> nn.Module:
    """``loss_fn``, or for a :class:`CrossEntropy` that has not decided whether to shift the labels,
    one that shifts them when ``model`` is a causal language model (the objective's rule)."""
    if isinstance(loss_fn, CrossEntropy) and loss_fn.causal is None:
        return CrossEntropy(causal=is_causal_lm(model))
    return loss_fn


def _build_scheduler(
    cfg: TrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The per-step learning-rate schedule of ``cfg`` (``None`` for a constant rate without warmup)."""
    warmup = warmup_steps_for(cfg.warmup_epochs, steps_per_epoch)
    if cfg.schedule == "constant" and warmup == 0:
        return None  # the rate never changes: no scheduler, as in runs made before schedules existed
    if not all("lr" in group for group in optimizer.param_groups):
        raise ConfigError(
            f"optimizer={cfg.optimizer!r} has no learning rate per parameter group to schedule; "
            "use schedule='constant' without warmup_epochs"
        )
    total = cfg.epochs * steps_per_epoch
    if warmup >= total:
        raise ConfigError(
            f"warmup_epochs={cfg.warmup_epochs!r} is {warmup} steps, not fewer than the run's {total}; "
            "shorten the warmup"
        )
    return make_scheduler(optimizer, cfg.schedule, total, warmup)


def _build_optimizer(
    cfg: TrainConfig, model: nn.Module, train_ds: Dataset, loss_fn: nn.Module, *, user_options: dict[str, Any]
) -> torch.optim.Optimizer:
    """The optimizer of the resolved ``cfg``; a refusal names the options the user gave."""
    name = factory_name(cfg.optimizer)
    extra = {**run_arguments(name, train_data=train_ds, loss_fn=loss_fn), **cfg.optimizer_kwargs}
    try:
        return make_optimizer(
            name,
            model,
            lr=cfg.lr,
            momentum=cfg.momentum,
            weight_decay=cfg.weight_decay,
            rho=cfg.rho,
            **extra,
        )
    except ConfigError as exc:
        if not user_options:
            raise
        raise ConfigError(
            f"optimizer_kwargs={json.dumps(user_options, default=str)} does not fit "
            f"optimizer={cfg.optimizer!r}: {exc}"
        ) from None


def _train_epoch(run: _Run, epoch: int, step: int) -> Iterator[dict[str, Any]]:
    """Train one epoch, yielding the ``steps.csv`` row of each step as it is taken.

    The row's ``lr`` is the rate the step was taken with; the schedule moves on once the caller is
    done with the row, so a sharpness measurement at the step records that rate too (at the last step
    of a cosine schedule the next rate would be 0).
    """
    cfg = run.config
    torch.manual_seed(derived_seed(cfg.seed, epoch))  # dropout and other stochastic layers
    augment = (
        torch.Generator().manual_seed(derived_seed(cfg.seed, epoch, AUGMENT_KEY)) if cfg.augment else None
    )
    order = run.batches.order(cfg.seed, epoch) if run.full_batch is None else None
    chunk = run.small + run.large
    for i in range(run.steps_per_epoch):
        lr = run.optimizer.param_groups[0]["lr"]
        if run.full_batch is not None:
            loss = full_batch_step(run.optimizer, run.full_batch)
        else:
            assert order is not None
            idx = order[i * chunk : (i + 1) * chunk]
            batch = run.batches.take(idx[: run.small])
            next_batch = run.batches.take(idx[run.small :]) if run.large else None
            if augment is not None:
                batch = (augment_batch(batch[0], augment), batch[1])
                if next_batch is not None:
                    next_batch = (augment_batch(next_batch[0], augment), next_batch[1])
            loss = training_step(
                run.optimizer, run.model, run.loss_fn, batch, next_batch, clip_grad_norm=cfg.clip_grad_norm
            )
        step += 1
        if not math.isfinite(loss):
            raise ConfigError(
                f"the loss became {loss} at epoch {epoch}, step {step}; lower lr (now {cfg.lr}) or rho"
            )
        row: dict[str, Any] = {"epoch": epoch, "step": step, "loss": loss, "lr": lr}
        row.update(step_statistics(run.optimizer) or {})
        yield row
        # after the caller's tracking and hooks: they see the rate this step was taken with
        if run.scheduler is not None:
            run.scheduler.step()


def _track(run: _Run, step: int, epoch: int) -> dict[str, Any] | None:
    """Measure the sharpness at ``step`` when it is due, at the evaluated (and saved) parameters."""
    if run.tracker is None:
        return None
    last = step == run.total_steps
    if not run.tracker.due(step, last):
        return None
    with evaluation_mode(run.optimizer):
        return run.tracker.measure(step, epoch, run.optimizer)


def _write_logs(run: _Run, step_rows: list[dict[str, Any]], epoch_rows: list[dict[str, Any]]) -> None:
    if run.tracker is not None:
        run.tracker.write_csv(run.folder.sharpness)
    run.folder.write_logs(step_rows, epoch_rows)


def _evaluate_and_save(run: _Run, epoch: int, step: int) -> dict[str, Any]:
    """Eval-mode train/test metrics of the current weights; the checkpoint of ``epoch`` when it is due."""
    cfg = run.config
    with evaluation_mode(run.optimizer):
        tr = run.eval_train.evaluate()
        te = run.eval_test.evaluate() if run.eval_test is not None else None
        metrics = {
            "epoch": epoch,
            "step": step,
            "train_loss": tr.loss,
            "train_accuracy": tr.accuracy,
            "test_loss": te.loss if te else float("nan"),
            "test_accuracy": te.accuracy if te else float("nan"),
        }
        if epoch % cfg.save_every == 0 or epoch == cfg.epochs:  # among the evaluated epochs
            save_checkpoint(
                run.folder.checkpoint(epoch),
                run.model,
                model_spec=cfg.model,
                data_spec=cfg.data,
                optimizer={"name": cfg.optimizer, "hparams": checkpoint_hparams(cfg)},
                step=step,
                epoch=epoch,
                metrics={k: v for k, v in metrics.items() if k not in ("epoch", "step")},
                extra={"seed": cfg.seed, "loss": cfg.loss},
            )
    return metrics
