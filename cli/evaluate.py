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
from landscape.objective.loading import objective_from_checkpoint
from landscape.runs.evaluation import (
    EVALUATION_FILE,
    evaluation_file,
    evaluation_settings,
    write_evaluation_file,
)


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
    settings = evaluation_settings(
        ckpt, spec, batch_size=source["batch_size"], dtype=objective.dtype, bn_mode=bn_mode
    )
    if out is not None:
        check_replaceable(out / EVALUATION_FILE, settings, overwrite=overwrite)
    record = evaluation_file(objective, settings, checkpoint=checkpoint, seed=seed)
    if out is not None:
        write_evaluation_file(out, record)
    result = record.to_dict()
    if as_json:
        echo_json(result)
    else:
        echo_table(
            [(k, result[k]) for k in ("loss", "accuracy", "num_samples", "device", "dtype", "bn_mode")]
        )
