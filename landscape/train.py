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
from landscape.errors import ConfigError, DataError, NoSplitError, ResultFileError, check_positive
from landscape.io.atomic import atomic_torch_save, atomic_write_json, atomic_write_text
from landscape.io.checkpoints import save_checkpoint
from landscape.io.data import (
    DATASET_NAMES,
    DataSpec,
    analysis_loader,
    input_shape,
    load_dataset,
    num_classes,
)
from landscape.io.models import ModelSpec, build_model, default_model_kwargs
from landscape.objective import Objective
from landscape.optim.factory import (
    OPTIMIZER_NAMES,
    evaluation_mode,
    make_optimizer,
    needs_two_batches,
    resolve_options,
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
        check_positive("eval_batch_size", self.eval_batch_size)
        if self.rho is not None:
            check_positive("--rho", self.rho, allow_zero=True)
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
    return default_model_kwargs(spec, input_shape(ds), num_classes(ds))


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
    """Rows of a log written by :func:`_csv_text`; a damaged file is a ``ResultFileError`` naming it."""

    def parse(v: str) -> int | float:
        return int(v) if v.lstrip("-").isdigit() else float(v)

    try:
        with open(path, newline="") as fh:
            # Empty cells stay absent so that a rewritten file is byte-identical to the original.
            return [
                {k: parse(v) for k, v in r.items() if v not in ("", None) and k is not None}
                for r in csv.DictReader(fh)
            ]
    except FileNotFoundError:
        raise ResultFileError(
            f"{str(path)!r} is missing, so the run cannot be resumed; pass --overwrite to start over"
        ) from None
    except (csv.Error, ValueError, UnicodeDecodeError) as exc:
        raise ResultFileError(
            f"{str(path)!r} is damaged ({exc}), so the run cannot be resumed; pass --overwrite to start over"
        ) from None


def _resume_rows(path: Path, required: tuple[str, ...], last_epoch: int) -> list[dict[str, Any]]:
    """The rows of ``path`` up to ``last_epoch``, checked to hold every ``required`` column.

    Rows past ``last_epoch`` come from an epoch whose resume state was never written (the logs are
    written first); that epoch is replayed, so its rows are dropped rather than duplicated.
    """
    rows = _read_csv(path)
    for i, r in enumerate(rows):
        missing = [c for c in required if c not in r]
        if missing:
            raise ResultFileError(
                f"{str(path)!r} is damaged (row {i + 1} has no {', '.join(missing)}), so the run cannot be "
                "resumed; pass --overwrite to start over"
            )
    return [r for r in rows if r["epoch"] <= last_epoch]


def _check_resume_logs(
    out: Path, step_rows: list[dict[str, Any]], epoch_rows: list[dict[str, Any]], epoch: int, step: int
) -> None:
    """The logs must cover exactly the epochs and steps the resume state has done."""
    if [int(r["epoch"]) for r in epoch_rows] != list(range(epoch + 1)):
        raise ResultFileError(
            f"{str(out / 'metrics.csv')!r} does not list epochs 0..{epoch} as the resume state says, so the "
            "run cannot be resumed; pass --overwrite to start over"
        )
    if len(step_rows) != step:
        raise ResultFileError(
            f"{str(out / 'steps.csv')!r} has {len(step_rows)} steps where the resume state has {step}, so "
            "the run cannot be resumed; pass --overwrite to start over"
        )


def _check_same_run(config_path: Path, cfg: dict[str, Any], out: Path) -> None:
    """Refuse a folder whose ``config.json`` resolves to other settings than ``cfg``."""
    try:
        previous = json.loads(config_path.read_text())
        if not isinstance(previous, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        raise ResultFileError(
            f"{str(config_path)!r} is unreadable ({exc}); pass --overwrite to start over"
        ) from None
    previous = _with_resolved_optimizer(previous)
    if previous != cfg:
        changed = sorted(k for k in set(previous) | set(cfg) if previous.get(k) != cfg.get(k))
        raise ResultFileError(
            f"{str(out)!r} holds a run with other settings ({', '.join(changed)} differ); "
            "use another -o/--out or pass --overwrite"
        )


def _with_resolved_optimizer(cfg: dict[str, Any]) -> dict[str, Any]:
    """A saved config with ``rho`` and the optimizer options resolved, as this version records them.

    Runs written before resolved values were recorded (``"rho": null``) still resume.
    """
    kwargs = cfg.get("optimizer_kwargs")
    if not isinstance(kwargs, dict) or cfg.get("optimizer") not in OPTIMIZER_NAMES:
        return cfg  # damaged or foreign: compares unequal and is reported as other settings
    kwargs = dict(kwargs)
    if cfg["optimizer"] == "sgd-hess":
        kwargs.setdefault("seed", cfg.get("seed", 0))
    rho, options = resolve_options(cfg["optimizer"], rho=cfg.get("rho"), **kwargs)
    return _json_plain({**cfg, "rho": rho, "optimizer_kwargs": options})


def _json_plain(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` as it reads back from JSON (tuples become lists), so saved and new configs compare."""
    try:
        return json.loads(json.dumps(obj))
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"the settings must be JSON values to be recorded in config.json ({exc}); pass options as "
            "numbers, strings, booleans or lists"
        ) from None


def _load_test_split(spec: DataSpec) -> Dataset | None:
    """The test split that goes with the training data, or ``None`` where the source has none.

    A tensor file holds one dataset, and a dataset factory without a ``split`` parameter provides one
    (:class:`~landscape.errors.NoSplitError`); anything else that fails is a real error and is raised.
    """
    # the same test as load_dataset's for a tensor file
    if spec.name not in DATASET_NAMES and (
        spec.name.endswith((".pt", ".pth", ".npz")) or Path(spec.name).is_file()
    ):
        return None
    try:
        return load_dataset(DataSpec(spec.name, split="test", data_dir=spec.data_dir))
    except NoSplitError:
        return None


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

    Everything that can be wrong with the settings (values, device, data, model, optimizer, one
    step's batch) is checked before ``out_dir`` is created or anything is written in it, so a
    failed command leaves nothing behind. ``config`` is completed in place with what the run
    actually uses (model input size and class count, the method's default ``rho`` and option
    defaults, see :func:`~landscape.optim.factory.resolve_options`); ``config.json`` and every
    checkpoint record those resolved values.

    Args:
        config: the run's settings.
        out_dir: run folder (created). If it holds a run with the same resolved config, training
            resumes from its last completed epoch; a run with another config is refused unless
            ``overwrite``.
        device: ``auto|cpu|cuda[:N]|mps``.
        dtype: parameter dtype.
        overwrite: start over even if ``out_dir`` holds another run.
        quiet: no progress bar.
        on_epoch: called after each epoch with ``(epoch, metrics)``.

    Raises:
        ConfigError: a bad setting (named by its ``landscape train`` option).
        DataError: the training data cannot be read or is empty.
        ModelError: the model cannot be built.
        ResultFileError: ``out_dir`` holds another run, or a run whose files cannot be resumed.
    """
    config.validate()
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"-o/--out {str(out)!r} exists and is not a directory")
    dev = resolve_device(device)

    train_ds = load_dataset(config.data)
    if len(train_ds) == 0:  # type: ignore[arg-type]
        raise DataError(f"--data {config.data.name!r} holds no training examples; give a non-empty dataset")
    test_ds = _load_test_split(config.data)
    config.model = _default_model_kwargs(config.model, train_ds)
    user_options = dict(config.optimizer_kwargs)
    given_options = dict(user_options)
    if config.optimizer == "sgd-hess":
        given_options.setdefault("seed", config.seed)  # its Rademacher probes
    config.rho, config.optimizer_kwargs = resolve_options(config.optimizer, rho=config.rho, **given_options)
    cfg_compare = _json_plain({**config.to_dict(), "dtype": dtype_name(dtype)})

    torch.manual_seed(config.seed)
    model = build_model(config.model).to(device=dev, dtype=dtype)
    loss_fn = nn.CrossEntropyLoss()
    opt_kwargs = dict(config.optimizer_kwargs)
    if config.optimizer == "newton-summary":
        hg_subset = torch.arange(min(len(train_ds), 512))  # type: ignore[arg-type]
        opt_kwargs.setdefault("loss_fn", loss_fn)
        opt_kwargs.setdefault(
            "hg_loader", analysis_loader(torch.utils.data.Subset(train_ds, hg_subset.tolist()), 512)
        )
    try:
        optimizer = make_optimizer(
            config.optimizer,
            model,
            lr=config.lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
            rho=config.rho,
            **opt_kwargs,
        )
    except ConfigError as exc:
        if not user_options:
            raise
        raise ConfigError(
            f"--opt-kwargs {json.dumps(user_options, default=str)} does not fit --optimizer "
            f"{config.optimizer}: {exc}"
        ) from None

    batches = _Batches(train_ds, dev, dtype)
    two = needs_two_batches(optimizer)
    if two:
        small = int(getattr(optimizer, "small_batch_size", config.batch_size))
        large = int(getattr(optimizer, "large_batch_size", 4 * config.batch_size))
        chunk = small + large
        fix = "lower small_batch_size/large_batch_size in --opt-kwargs or use more data"
    else:
        small, chunk = config.batch_size, config.batch_size
        fix = "lower --batch-size or use more data"
    steps_per_epoch = batches.n // chunk
    if steps_per_epoch == 0:
        raise ConfigError(
            f"the training set has {batches.n} example(s), fewer than one step's batch ({chunk}); {fix}"
        )
    eval_train = Objective(model, train_ds, batch_size=config.eval_batch_size, device=dev, dtype=dtype)
    eval_test = (
        Objective(model, test_ds, batch_size=config.eval_batch_size, device=dev, dtype=dtype)
        if test_ds is not None
        else None
    )

    # Settings are sound: only now look at the folder and write to it.
    config_path = out / "config.json"
    state_path = out / "state.pt"
    start_epoch, step = 0, 0
    state: dict[str, Any] | None = None
    step_rows: list[dict[str, Any]] = []
    epoch_rows: list[dict[str, Any]] = []
    if config_path.exists() and not overwrite:
        _check_same_run(config_path, cfg_compare, out)
        if state_path.exists():
            try:
                state = torch.load(state_path, map_location="cpu", weights_only=True)
                start_epoch, step = int(state["epoch"]), int(state["step"])
                model.load_state_dict(state["model"])
                optimizer.load_state_dict(state["optimizer"])
            except Exception as exc:
                raise ResultFileError(
                    f"cannot resume from {str(state_path)!r} ({type(exc).__name__}); pass --overwrite to start over"
                ) from None
            step_rows = _resume_rows(out / "steps.csv", STEP_COLUMNS[:4], start_epoch)
            epoch_rows = _resume_rows(out / "metrics.csv", EPOCH_COLUMNS, start_epoch)
            _check_resume_logs(out, step_rows, epoch_rows, start_epoch, step)
    elif overwrite:
        for f in [
            state_path,
            out / "steps.csv",
            out / "metrics.csv",
            out / "summary.json",
            out / "final.pt",
            *(out / "ckpts").glob("epoch_*.pt"),
        ]:
            f.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(config_path, cfg_compare)

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
    """The optimizer's resolved hyperparameters for the checkpoints (JSON values only)."""
    h: dict[str, Any] = {
        "lr": config.lr,
        "momentum": config.momentum,
        "weight_decay": config.weight_decay,
        "batch_size": config.batch_size,
        "epochs": config.epochs,
    }
    if config.rho is not None:
        h["rho"] = config.rho
    scalar = (int, float, str, bool)
    for k, v in config.optimizer_kwargs.items():
        if isinstance(v, scalar) or (isinstance(v, (list, tuple)) and all(isinstance(e, scalar) for e in v)):
            h[k] = list(v) if isinstance(v, tuple) else v
    return h
