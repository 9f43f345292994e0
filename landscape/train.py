"""The training loop behind ``landscape train``: runs that the analysis commands read.

A run folder holds::

    config.json          the settings (model, data, optimizer, seed, ...)
    steps.csv            one row per step: epoch, step, loss, lr and, for the SAM family, the
                         direction-vs-magnitude statistics (grad_norm_ratio, cosine, frac_larger)
    metrics.csv          one row per epoch: train/test loss and accuracy over the full splits
    ckpts/epoch_000.pt   checkpoints after each ``save_every`` epochs (epoch 0 = initialization):
                         the trajectory for PCA directions (``plot2d --trajectory RUN/ckpts``)
                         and interpolation plots
    final.pt             the last checkpoint
    state.pt             model + optimizer state for an exact resume after an interruption

Every random draw (initialization, the per-epoch order of the examples, probes) comes from
``config.seed``; the order of epoch ``e`` depends only on ``(seed, e)``, so a resumed run is
bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset, default_collate

from landscape.decompose import STAT_KEYS
from landscape.device import dtype_name, resolve_device
from landscape.errors import ConfigError, ResultFileError, check_positive
from landscape.io.atomic import atomic_torch_save, atomic_write_json, atomic_write_text
from landscape.io.checkpoints import save_checkpoint
from landscape.io.data import DataSpec, analysis_loader, input_shape, load_dataset, num_classes
from landscape.io.models import ModelSpec, build_model
from landscape.objective import Objective
from landscape.optim.factory import (
    OPTIMIZER_NAMES,
    evaluation_mode,
    make_optimizer,
    needs_two_batches,
    step_statistics,
    training_step,
)
from landscape.progress import Progress

STEP_COLUMNS = ("epoch", "step", "loss", "lr", *STAT_KEYS)
EPOCH_COLUMNS = ("epoch", "step", "train_loss", "train_accuracy", "test_loss", "test_accuracy")


@dataclass
class TrainConfig:
    """Everything that determines a run (saved as ``config.json``)."""

    model: ModelSpec = field(default_factory=lambda: ModelSpec("cnn", {}))
    data: DataSpec = field(default_factory=DataSpec)
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    rho: float | None = None
    optimizer_kwargs: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 64
    epochs: int = 10
    seed: int = 0
    save_every: int = 1
    eval_batch_size: int = 512

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["model"] = self.model.to_dict()
        d["data"] = self.data.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        d = dict(d)
        d["model"] = ModelSpec.from_dict(d["model"])
        d["data"] = DataSpec.from_dict(d["data"])
        return cls(**d)

    def validate(self) -> None:
        if self.optimizer not in OPTIMIZER_NAMES:
            raise ConfigError(
                f"--optimizer={self.optimizer!r} is not valid; choose one of {', '.join(OPTIMIZER_NAMES)}"
            )
        check_positive("--lr", self.lr)
        check_positive("--epochs", self.epochs)
        check_positive("--batch-size", self.batch_size)
        check_positive("--save-every", self.save_every)
        check_positive("--weight-decay", self.weight_decay, allow_zero=True)
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"--momentum={self.momentum!r} must be in [0, 1)")


@dataclass
class TrainResult:
    """Where the run is and how it ended."""

    out_dir: Path
    final_checkpoint: Path
    epochs_done: int
    steps_done: int
    resumed_from_epoch: int
    final_metrics: dict[str, float]


def _default_model_kwargs(spec: ModelSpec, ds: Dataset) -> ModelSpec:
    """Fill input size and class count from the data when the user did not give them."""
    kwargs = dict(spec.kwargs)
    shape = input_shape(ds)
    classes = num_classes(ds)
    if spec.name == "mlp":
        kwargs.setdefault("in_features", int(math.prod(shape)))
        kwargs.setdefault("num_classes", classes)
    elif spec.name in ("cnn", "resnet18", "resnet34", "resnet50", "wrn"):
        kwargs.setdefault("in_channels", int(shape[0]))
        kwargs.setdefault("num_classes", classes)
    return ModelSpec(spec.name, kwargs)


class _Batches:
    """Seeded batches by index: the order of epoch ``e`` depends only on ``(seed, e)``."""

    def __init__(self, ds: Dataset, device: torch.device, dtype: torch.dtype) -> None:
        self.ds = ds
        self.n = len(ds)  # type: ignore[arg-type]
        self.device = device
        self.dtype = dtype
        self.tensors = ds.tensors[:2] if isinstance(ds, TensorDataset) else None

    def take(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.tensors is not None:
            x, y = self.tensors[0][idx], self.tensors[1][idx]
        else:
            x, y = default_collate([self.ds[int(i)] for i in idx])[:2]
        x = x.to(self.device)
        return (x.to(self.dtype) if x.is_floating_point() else x), y.to(self.device)

    def order(self, seed: int, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        return torch.randperm(self.n, generator=g)


def _csv_text(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: r.get(k, "") for k in columns})
    return buf.getvalue()


def _read_csv(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []

    def parse(v: str | None) -> int | float:
        if v in ("", None):
            return float("nan")
        return int(v) if v.lstrip("-").isdigit() else float(v)

    with open(path, newline="") as fh:
        # Empty cells stay absent so that a rewritten file is byte-identical to the original.
        return [{k: parse(v) for k, v in r.items() if v not in ("", None)} for r in csv.DictReader(fh)]


def train(
    config: TrainConfig,
    out_dir: str | Path,
    *,
    device: str | torch.device = "auto",
    dtype: torch.dtype = torch.float32,
    overwrite: bool = False,
    quiet: bool = False,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train ``config.model`` on ``config.data`` with ``config.optimizer``; resume if interrupted.

    Args:
        config: the run's settings.
        out_dir: run folder (created). If it holds a run with the same config, training resumes
            from its last completed epoch; a run with another config is refused unless ``overwrite``.
        device: ``auto|cpu|cuda[:N]|mps``.
        dtype: parameter dtype.
        overwrite: start over even if ``out_dir`` holds another run.
        quiet: no progress bar.
        on_epoch: called after each epoch with ``(epoch, metrics)``.
    """
    config.validate()
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"-o/--out {str(out)!r} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(device)

    train_ds = load_dataset(config.data)
    test_spec = DataSpec(config.data.name, split="test", data_dir=config.data.data_dir)
    try:
        test_ds: Dataset | None = load_dataset(test_spec)
    except Exception:  # a user's factory or tensor file may have no test split
        test_ds = None
    config.model = _default_model_kwargs(config.model, train_ds)

    config_path = out / "config.json"
    state_path = out / "state.pt"
    cfg = config.to_dict()
    cfg_compare = {**cfg, "dtype": dtype_name(dtype)}
    start_epoch, step = 0, 0
    state: dict[str, Any] | None = None
    if config_path.exists() and not overwrite:
        try:
            previous = json.loads(config_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ResultFileError(
                f"{str(config_path)!r} is unreadable ({exc}); pass --overwrite to start over"
            ) from None
        if previous != cfg_compare:
            changed = sorted(
                k for k in set(previous) | set(cfg_compare) if previous.get(k) != cfg_compare.get(k)
            )
            raise ResultFileError(
                f"{str(out)!r} holds a run with other settings ({', '.join(changed)} differ); "
                "use another -o/--out or pass --overwrite"
            )
        if state_path.exists():
            try:
                state = torch.load(state_path, map_location="cpu", weights_only=True)
                start_epoch, step = int(state["epoch"]), int(state["step"])
            except Exception as exc:
                raise ResultFileError(
                    f"cannot resume from {str(state_path)!r} ({type(exc).__name__}); pass --overwrite to start over"
                ) from None
    elif overwrite:
        for f in [
            state_path,
            out / "steps.csv",
            out / "metrics.csv",
            out / "final.pt",
            *(out / "ckpts").glob("epoch_*.pt"),
        ]:
            f.unlink(missing_ok=True)
    atomic_write_json(config_path, cfg_compare)

    torch.manual_seed(config.seed)
    model = build_model(config.model).to(device=dev, dtype=dtype)
    loss_fn = nn.CrossEntropyLoss()
    opt_kwargs = dict(config.optimizer_kwargs)
    if config.optimizer == "newton-summary":
        hg_subset = torch.arange(min(len(train_ds), 512))
        opt_kwargs.setdefault("loss_fn", loss_fn)
        opt_kwargs.setdefault(
            "hg_loader", analysis_loader(torch.utils.data.Subset(train_ds, hg_subset.tolist()), 512)
        )
    if config.optimizer == "sgd-hess":
        opt_kwargs.setdefault("seed", config.seed)
    optimizer = make_optimizer(
        config.optimizer,
        model,
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        rho=config.rho,
        **opt_kwargs,
    )
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])

    batches = _Batches(train_ds, dev, dtype)
    two = needs_two_batches(optimizer)
    if two:
        small = int(getattr(optimizer, "small_batch_size", config.batch_size))
        large = int(getattr(optimizer, "large_batch_size", 4 * config.batch_size))
        chunk = small + large
    else:
        small, chunk = config.batch_size, config.batch_size
    steps_per_epoch = batches.n // chunk
    if steps_per_epoch == 0:
        raise ConfigError(f"the training set has {batches.n} examples, fewer than one step's batch ({chunk})")

    eval_train = Objective(model, train_ds, batch_size=config.eval_batch_size, device=dev, dtype=dtype)
    eval_test = (
        Objective(model, test_ds, batch_size=config.eval_batch_size, device=dev, dtype=dtype)
        if test_ds is not None
        else None
    )
    step_rows = _read_csv(out / "steps.csv") if state is not None else []
    epoch_rows = _read_csv(out / "metrics.csv") if state is not None else []

    def evaluate_and_save(epoch: int) -> dict[str, float]:
        with evaluation_mode(optimizer):
            tr = eval_train.evaluate()
            te = eval_test.evaluate() if eval_test is not None else None
            metrics = {
                "epoch": epoch,
                "step": step,
                "train_loss": tr.loss,
                "train_accuracy": tr.accuracy,
                "test_loss": te.loss if te else float("nan"),
                "test_accuracy": te.accuracy if te else float("nan"),
            }
            if epoch % config.save_every == 0 or epoch == config.epochs:
                save_checkpoint(
                    out / "ckpts" / f"epoch_{epoch:03d}.pt",
                    model,
                    model_spec=config.model,
                    data_spec=config.data,
                    optimizer={"name": config.optimizer, "hparams": _hparams(config)},
                    step=step,
                    epoch=epoch,
                    metrics={k: v for k, v in metrics.items() if k not in ("epoch", "step")},
                    extra={"seed": config.seed},
                )
        return metrics

    if state is None:
        epoch_rows = [evaluate_and_save(0)]
        atomic_write_text(out / "metrics.csv", _csv_text(epoch_rows, EPOCH_COLUMNS))

    model.train()
    with Progress(
        (config.epochs - start_epoch) * steps_per_epoch, f"train {config.optimizer}", quiet=quiet
    ) as bar:
        for epoch in range(start_epoch + 1, config.epochs + 1):
            torch.manual_seed(config.seed * 1_000_003 + epoch)  # dropout and other stochastic layers
            order = batches.order(config.seed, epoch)
            for i in range(steps_per_epoch):
                idx = order[i * chunk : (i + 1) * chunk]
                batch = batches.take(idx[:small])
                nxt = batches.take(idx[small:]) if two else None
                loss = training_step(optimizer, model, loss_fn, batch, nxt)
                step += 1
                if not math.isfinite(loss):
                    raise ConfigError(
                        f"the loss became {loss} at epoch {epoch}, step {step}; lower --lr (now {config.lr}) or --rho"
                    )
                row: dict[str, Any] = {
                    "epoch": epoch,
                    "step": step,
                    "loss": loss,
                    "lr": optimizer.param_groups[0]["lr"],
                }
                stats = step_statistics(optimizer)
                if stats:
                    row.update(stats)
                step_rows.append(row)
                bar.update()
                bar.set_postfix(loss=f"{loss:.4f}")
            metrics = evaluate_and_save(epoch)
            epoch_rows.append(metrics)
            # Logs first, then the resume state: a crash in between replays one epoch, never skips one.
            atomic_write_text(out / "steps.csv", _csv_text(step_rows, STEP_COLUMNS))
            atomic_write_text(out / "metrics.csv", _csv_text(epoch_rows, EPOCH_COLUMNS))
            atomic_torch_save(
                {
                    "epoch": epoch,
                    "step": step,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                },
                state_path,
            )
            if on_epoch is not None:
                on_epoch(epoch, metrics)

    final_epoch = max(config.epochs, start_epoch)
    last = out / "ckpts" / f"epoch_{final_epoch:03d}.pt"
    final = out / "final.pt"
    atomic_torch_save(torch.load(last, map_location="cpu", weights_only=True), final)
    final_metrics = {k: float(v) for k, v in epoch_rows[-1].items()} if epoch_rows else {}
    atomic_write_json(out / "summary.json", {"final": final_metrics, "epochs": final_epoch, "steps": step})
    return TrainResult(
        out_dir=out,
        final_checkpoint=final,
        epochs_done=final_epoch,
        steps_done=step,
        resumed_from_epoch=start_epoch,
        final_metrics=final_metrics,
    )


def _hparams(config: TrainConfig) -> dict[str, Any]:
    h: dict[str, Any] = {
        "lr": config.lr,
        "momentum": config.momentum,
        "weight_decay": config.weight_decay,
        "batch_size": config.batch_size,
        "epochs": config.epochs,
    }
    if config.rho is not None:
        h["rho"] = config.rho
    h.update({k: v for k, v in config.optimizer_kwargs.items() if isinstance(v, (int, float, str, bool))})
    return h
