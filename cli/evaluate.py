"""``landscape evaluate``: loss and accuracy of a checkpoint on a dataset."""

from __future__ import annotations

from pathlib import Path

import click

from cli.common import (
    data_options,
    device_options,
    dtype_from_option,
    echo_json,
    echo_table,
    model_options,
    parse_json_kwargs,
    seed_option,
)
from landscape.io.atomic import atomic_write_json
from landscape.io.loading import objective_from_checkpoint


@click.command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@model_options
@data_options
@device_options
@seed_option
@click.option(
    "--bn-mode",
    default="eval",
    show_default=True,
    type=click.Choice(["eval", "train"]),
    help="Batch norm: running statistics (eval) or batch statistics (train).",
)
@click.option(
    "-o", "--out", "out", default=None, type=click.Path(path_type=Path), help="Write evaluation.json here."
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def evaluate(
    checkpoint: Path,
    model: str | None,
    model_kwargs: str | None,
    unsafe_load: bool,
    data: str | None,
    data_dir: str | None,
    split: str | None,
    samples: int | None,
    batch_size: int,
    device: str,
    dtype: str,
    seed: int,
    bn_mode: str,
    out: Path | None,
    as_json: bool,
) -> None:
    """Mean loss and accuracy of CHECKPOINT over a whole dataset (exact per-sample weighting).

    \b
    Examples:
      landscape evaluate runs/sgd/final.pt
      landscape evaluate runs/sgd/final.pt --split test --json
      landscape evaluate weights.pt --model resnet18 --data cifar10 --data-dir ~/data --device cuda
    """
    objective, ckpt, spec = objective_from_checkpoint(
        checkpoint,
        model=model,
        model_kwargs=parse_json_kwargs(model_kwargs),
        unsafe_load=unsafe_load,
        data=data,
        data_dir=data_dir,
        split=split,
        samples=samples,
        batch_size=batch_size,
        seed=seed,
        device=device,
        dtype=dtype_from_option(dtype),
        bn_mode=bn_mode,
    )
    result = {
        **objective.evaluate().to_dict(),
        **objective.metadata(),
        "checkpoint": str(checkpoint),
        "model": ckpt.model_spec.to_dict() if ckpt.model_spec else None,
        "data": spec.to_dict(),
        "seed": seed,
    }
    if out is not None:
        atomic_write_json(out / "evaluation.json", result)
    if as_json:
        echo_json(result)
    else:
        echo_table(
            [(k, result[k]) for k in ("loss", "accuracy", "num_samples", "device", "dtype", "bn_mode")]
        )
