"""``landscape evaluate``: loss and accuracy of a checkpoint on a dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from landscape.cli.common import (
    echo_json,
    echo_table,
    seed_option,
    source_options,
)
from landscape.cli.result_folder import check_batch_size, check_out_folder, check_replaceable
from landscape.io.atomic import atomic_write_json
from landscape.objective.loading import objective_from_checkpoint
from landscape.runs import weights_digest


@click.command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@source_options
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
@click.option(
    "--overwrite", is_flag=True, help="Replace an evaluation.json in -o DIR made with other settings."
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def evaluate(
    checkpoint: Path,
    seed: int,
    bn_mode: str,
    out: Path | None,
    overwrite: bool,
    as_json: bool,
    source: dict[str, Any],
) -> None:
    """Mean loss and accuracy of CHECKPOINT over a whole dataset (exact per-sample weighting).

    With -o DIR, an evaluation.json made with other settings is never replaced without --overwrite.

    \b
    Examples:
      landscape evaluate runs/sgd/final.pt
      landscape evaluate runs/sgd/final.pt --split test --json
      landscape evaluate weights.pt --model resnet18 --data cifar10 --data-dir ~/data --device cuda
    """
    check_batch_size(source["batch_size"])
    check_out_folder(out)
    objective, ckpt, spec = objective_from_checkpoint(
        checkpoint,
        **source,
        seed=seed,
        bn_mode=bn_mode,
    )
    digest = weights_digest(ckpt.state_dict)
    settings = {
        "checkpoint_digest": digest,
        "model": ckpt.model_spec.to_dict() if ckpt.model_spec else None,
        "data": spec.to_dict(),
        "batch_size": source["batch_size"],
        "dtype": str(source["dtype"]),
        "bn_mode": bn_mode,
    }
    if out is not None:
        check_replaceable(out / "evaluation.json", settings, overwrite=overwrite)
    result = {
        **objective.evaluate().to_dict(),
        **objective.metadata(),
        "checkpoint": str(checkpoint),
        "model": ckpt.model_spec.to_dict() if ckpt.model_spec else None,
        "data": spec.to_dict(),
        "seed": seed,
        "checkpoint_digest": digest,
        "settings": settings,
    }
    if out is not None:
        atomic_write_json(out / "evaluation.json", result)
    if as_json:
        echo_json(result)
    else:
        echo_table(
            [(k, result[k]) for k in ("loss", "accuracy", "num_samples", "device", "dtype", "bn_mode")]
        )
