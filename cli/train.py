"""``landscape train``: make the runs the analysis commands read."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from landscape.cli.common import HF_TASKS, SEED, echo_json, echo_table, parse_json_kwargs, with_hf_task
from landscape.cli.flags import as_flags, with_flags
from landscape.data.datasets import DataSpec
from landscape.data.registry import data_help
from landscape.device import DTYPES, resolve_dtype
from landscape.errors import DivergenceWarning, LandscapeError, LandscapeWarning
from landscape.io.atomic import atomic_path
from landscape.models.builders import ModelSpec
from landscape.models.registry import model_help
from landscape.optim.decompose import DECOMPOSITIONS
from landscape.training import TRAIN_OPTIMIZERS, TrainConfig
from landscape.training import train as run_training
from landscape.training.recipes import SCHEDULES
from landscape.training.sharpness_tracking import DEFAULT_TRACK_SAMPLES


def to_flags(message: str) -> str:
    """``batch_size=0 must be > 0`` -> ``--batch-size=0 must be > 0``; ``overwrite=True`` -> ``--overwrite``.

    Library messages name TrainConfig fields and train() parameters; the table is
    :mod:`landscape.cli.flags`'s.
    """
    return as_flags(message, "train")


@click.command()
@click.option(
    "--model",
    default="cnn",
    show_default=True,
    metavar="NAME|pkg.mod:factory",
    help="Architecture: " + model_help() + "; or a factory.",
)
@click.option("--model-kwargs", default=None, metavar="JSON", help="Keyword arguments of the model factory.")
@click.option(
    "--hf-task",
    default=None,
    type=click.Choice(list(HF_TASKS)),
    help="Task of an hf:DIR / hf-config:DIR model when its config.json does not say (architectures).",
)
@click.option(
    "--data",
    default="digits",
    show_default=True,
    metavar="NAME|FILE|pkg.mod:factory",
    help="Training data: " + data_help() + ".",
)
@click.option("--data-dir", default=None, type=click.Path(), help="Folder with local dataset files.")
@click.option(
    "--data-kwargs",
    default=None,
    metavar="JSON",
    help="Keyword arguments of the dataset (e.g. text's '{\"seq_len\": 128}'); recorded in config.json.",
)
@click.option("--samples", default=None, type=int, help="Train on a fixed seeded subset of N examples.")
@click.option(
    "--optimizer",
    default="sgd",
    show_default=True,
    type=click.Choice(TRAIN_OPTIMIZERS),
    help="Optimizer; gd: full-batch gradient descent, one step per epoch on the whole training set.",
)
@click.option(
    "--loss",
    default="cross-entropy",
    show_default=True,
    metavar="cross-entropy|mse|pkg.mod:fn",
    help="Training loss; mse is 1/2 sum_c (f_c - onehot_c)^2 per example (recorded in checkpoints).",
)
@click.option("--lr", default=0.05, show_default=True, type=float, help="Learning rate.")
@click.option("--momentum", default=0.9, show_default=True, type=float, help="SGD momentum.")
@click.option("--weight-decay", default=5e-4, show_default=True, type=float, help="Weight decay.")
@click.option(
    "--rho",
    default=None,
    type=float,
    help="Radius of SAM-family methods, >= 0 (default per method; config.json records the value used).",
)
@click.option(
    "--decomposition",
    default=None,
    type=click.Choice(DECOMPOSITIONS),
    help="sam-direction / sam-magnitude: unit vector and norm (global) or sign and |.| per coordinate.",
)
@click.option(
    "--opt-kwargs",
    default=None,
    metavar="JSON",
    help="Further optimizer options as JSON, e.g. '{\"hessian_period\": 5}' (defaults are recorded in config.json).",
)
@click.option("--batch-size", default=64, show_default=True, type=int, help="Training batch size.")
@click.option("--epochs", default=10, show_default=True, type=int, help="Epochs.")
@click.option(
    "--save-every",
    default=1,
    show_default=True,
    type=int,
    help="Checkpoint the evaluated epochs that are multiples of N (and the last).",
)
@click.option(
    "--eval-every",
    default=1,
    show_default=True,
    type=int,
    help="Evaluate, log metrics and write the resume state every N epochs and at the last.",
)
@click.option(
    "--schedule",
    default="constant",
    show_default=True,
    type=click.Choice(SCHEDULES),
    help="Learning-rate schedule per step (cosine to 0; step: x0.1 at 50% and 75%).",
)
@click.option(
    "--warmup-epochs",
    default=0.0,
    show_default=True,
    type=float,
    help="Linear warmup (epochs, may be fractional).",
)
@click.option(
    "--label-smoothing", default=0.0, show_default=True, type=float, help="Label smoothing in [0, 1)."
)
@click.option(
    "--clip-grad-norm",
    default=None,
    type=float,
    metavar="MAX",
    help="Clip each gradient to global 2-norm MAX before the optimizer uses it (default: no clipping).",
)
@click.option(
    "--augment", is_flag=True, help="Random crop (4-pixel zero padding) and horizontal flip of image data."
)
@click.option(
    "--track-sharpness",
    default=None,
    type=int,
    metavar="EVERY",
    help="Top Hessian eigenvalue every EVERY steps and at the last: RUN/sharpness.csv and sharpness.png.",
)
@click.option("--track-top-k", default=1, show_default=True, type=int, help="Tracked eigenvalues.")
@click.option(
    "--track-samples",
    default=None,
    type=int,
    help=f"Fixed seeded training sample of the tracking (default: all, up to {DEFAULT_TRACK_SAMPLES}).",
)
@click.option(
    "--track-overlap", is_flag=True, help="Also track the gradient's fraction in the top-k eigenspace."
)
@click.option(
    "--seed", default=0, show_default=True, type=SEED, help="Seed of initialization and data order."
)
@click.option(
    "--device", default="auto", show_default=True, metavar="auto|cpu|cuda|cuda:N|mps", help="Device."
)
@click.option("--dtype", default="float32", show_default=True, type=click.Choice(list(DTYPES)))
@click.option("-o", "--out", "out", required=True, type=click.Path(path_type=Path), help="Run folder.")
@click.option(
    "--overwrite", is_flag=True, help="Start over even if the folder holds a run with other settings."
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print the final metrics as JSON.")
def train(
    model: str,
    model_kwargs: str | None,
    hf_task: str | None,
    data: str,
    data_dir: str | None,
    data_kwargs: str | None,
    samples: int | None,
    optimizer: str,
    loss: str,
    lr: float,
    momentum: float,
    weight_decay: float,
    rho: float | None,
    decomposition: str | None,
    opt_kwargs: str | None,
    batch_size: int,
    epochs: int,
    save_every: int,
    eval_every: int,
    schedule: str,
    warmup_epochs: float,
    label_smoothing: float,
    clip_grad_norm: float | None,
    augment: bool,
    track_sharpness: int | None,
    track_top_k: int,
    track_samples: int | None,
    track_overlap: bool,
    seed: int,
    device: str,
    dtype: str,
    out: Path,
    overwrite: bool,
    quiet: bool,
    as_json: bool,
) -> None:
    """Train a model and write a run folder: checkpoints per epoch, final.pt, metrics.csv, steps.csv.

    Re-running the same command after an interruption resumes from the last completed epoch and gives
    the same result as an uninterrupted run. Settings are checked before the folder is written, so a
    refused command leaves nothing behind. Logged metrics are eval-mode numbers (batch-norm running
    statistics) of exactly the checkpoint saved with them. SAM-family runs log, per step, ||g_SAM||/||g_SGD||,
    cosine(g_SAM, g_SGD) and the fraction of coordinates with |g_SAM_i| > |g_SGD_i|.

    \b
    Examples:
      landscape train -o runs/sgd
      landscape train --optimizer sam --rho 0.05 --epochs 20 -o runs/sam
      landscape train --optimizer sam-magnitude --decomposition elementwise -o runs/sam-mag
      landscape train --model resnet18 --data cifar100 --data-dir ~/data --optimizer sam --rho 0.1 \\
        --schedule cosine --augment --device cuda -o runs/r18
      landscape train --model mlp --model-kwargs '{"hidden": [64, 64], "activation": "tanh"}' \\
        --loss mse --optimizer gd --lr 0.2 --momentum 0 --weight-decay 0 --batch-size 2048 \\
        --epochs 400 --eval-every 100 --track-sharpness 5 -o runs/eos
    """
    extra = parse_json_kwargs(opt_kwargs, "--opt-kwargs") or {}
    if decomposition is not None:
        extra["decomposition"] = decomposition
    config = TrainConfig(
        model=ModelSpec(model, with_hf_task(parse_json_kwargs(model_kwargs), hf_task) or {}),
        data=DataSpec(
            data,
            split="train",
            data_dir=data_dir,
            subset=samples,
            seed=seed,
            kwargs=parse_json_kwargs(data_kwargs, "--data-kwargs") or {},
        ),
        optimizer=optimizer,
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
        rho=rho,
        optimizer_kwargs=extra,
        batch_size=batch_size,
        epochs=epochs,
        seed=seed,
        save_every=save_every,
        loss=loss,
        schedule=schedule,
        warmup_epochs=warmup_epochs,
        label_smoothing=label_smoothing,
        clip_grad_norm=clip_grad_norm,
        augment=augment,
        eval_every=eval_every,
        track_sharpness=track_sharpness,
        track_top_k=track_top_k,
        track_samples=track_samples,
        track_overlap=track_overlap,
    )
    try:
        with echo_warnings(DivergenceWarning, "train"):
            result = run_training(
                config, out, device=device, dtype=resolve_dtype(dtype), overwrite=overwrite, quiet=quiet
            )
    except LandscapeError as exc:
        raise with_flags(exc, "train") from None
    figure = _draw_sharpness(result.out_dir) if track_sharpness is not None else None
    summary = {
        "out": str(result.out_dir),
        "final_checkpoint": str(result.final_checkpoint),
        "epochs": result.epochs_done,
        "steps": result.steps_done,
        "resumed_from_epoch": result.resumed_from_epoch,
        **{k: v for k, v in result.final_metrics.items() if k not in ("epoch", "step")},
        **({"sharpness_figure": str(figure)} if figure is not None else {}),
    }
    if as_json:
        echo_json(summary)
    else:  # the table says "resumed" only for a run that was (the JSON always has the field)
        rows = [(k, v) for k, v in summary.items() if k != "resumed_from_epoch" or v]
        echo_table([(k, f"{v:.6g}" if isinstance(v, float) else v) for k, v in rows])


@contextmanager
def echo_warnings(category: type[LandscapeWarning], command: str) -> Iterator[None]:
    """Print each ``category`` warning as one ``warning: ...`` line on stderr, in ``command``'s flags.

    Other warnings go to the handler in place before.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("always", category)
        previous = warnings.showwarning

        def show(message: Any, cat: type[Warning], *args: Any, **kwargs: Any) -> None:
            if issubclass(cat, category):
                click.echo(f"warning: {as_flags(str(message), command)}", err=True)
            else:
                previous(message, cat, *args, **kwargs)

        warnings.showwarning = show
        yield


def _draw_sharpness(run: Path) -> Path:
    """RUN/sharpness.png from RUN/sharpness.csv and RUN/steps.csv (as ``landscape plot-sharpness RUN``)."""
    from landscape.plot.sharpness_track import plot_sharpness_track
    from landscape.training.sharpness_tracking import read_history

    out = run / "sharpness.png"
    fig = plot_sharpness_track([read_history(run)])
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=150)
    return out
