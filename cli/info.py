"""``landscape info``: what a checkpoint holds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from landscape.cli.common import echo_json, model_options, parse_json_kwargs, with_hf_task
from landscape.models.checkpoints import describe_checkpoint, load_checkpoint, load_model


@click.command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@model_options
@click.option(
    "--weights",
    type=click.Choice(["ema"]),
    default=None,
    help="Which weights of a timm-style file to describe: 'ema' for its state_dict_ema "
    "(default: its state_dict).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the description as JSON.")
def info(
    checkpoint: Path,
    model: str | None,
    model_kwargs: str | None,
    hf_task: str | None,
    unsafe_load: bool,
    weights: str | None,
    as_json: bool,
) -> None:
    """Describe CHECKPOINT: format, model, parameters per layer type, buffers, dtype, metadata.

    Tied weights (one tensor under several names, as GPT-2's token embedding and output head) are
    counted once and listed as tied.

    \b
    Examples:
      landscape info runs/sgd/final.pt
      landscape info my_state_dict.pt --model resnet18 --json
      landscape info lightning.ckpt --model mypkg.models:make_net --model-kwargs '{"width": 64}'
    """
    kwargs = with_hf_task(parse_json_kwargs(model_kwargs), hf_task)
    ckpt = load_checkpoint(checkpoint, unsafe_load=unsafe_load, weights=weights)
    if model is not None:
        _, ckpt = load_model(ckpt, model=model, model_kwargs=kwargs)  # also checks the architecture fits
    elif ckpt.model_spec is not None:
        _, ckpt = load_model(ckpt, model_kwargs=kwargs)
    desc = describe_checkpoint(ckpt)
    if as_json:
        echo_json(desc)
        return
    model_desc = desc["model"]
    rows = [
        ("file", desc["path"]),
        ("format", desc["format"]),
        (
            "model",
            f"{model_desc['name']} {model_desc['kwargs'] or ''}".strip() if model_desc else "(not recorded)",
        ),
        ("parameters", f"{desc['num_parameters']:,}"),
    ]
    for kind, n in desc["parameters_by_layer_type"].items():
        rows.append((f"  {kind}", f"{n:,}"))
    for group in desc["tied_parameters"]:
        rows.append(("tied (counted once)", " = ".join(group)))
    rows.append(("buffers", ", ".join(f"{k} ({v:,})" for k, v in desc["buffers"].items()) or "none"))
    rows.append(("dtype", ", ".join(desc["dtypes"])))
    rows.extend(_key_rows(desc["keys"]))
    if desc["data"]:
        d = desc["data"]
        rows.append(
            ("data", f"{d['name']} split={d['split']}" + (f" subset={d['subset']}" if d["subset"] else ""))
        )
    if desc["optimizer"]:
        o = desc["optimizer"]
        rows.append(("optimizer", f"{o.get('name')} {o.get('hparams', '')}"))
    if desc["step"] is not None or desc["epoch"] is not None:
        rows.append(("step / epoch", f"{desc['step']} / {desc['epoch']}"))
    for k, v in (desc["metrics"] or {}).items():
        rows.append((f"metric {k}", f"{v:.6g}" if isinstance(v, float) else str(v)))
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        click.echo(f"{k.ljust(width)}  {v}")


def _key_rows(keys: dict[str, Any]) -> list[tuple[str, str]]:
    """Rows saying how the file's names were read: prefix removed, keys ignored or filled, weight set."""
    rows = []
    if keys["weights"]:
        others = keys["other_weights"]
        also = f" (the file also holds {', '.join(others)}" + (
            "; --weights ema uses it)" if "state_dict_ema" in others else ")"
        )
        rows.append(("weights", keys["weights"] + (also if others else "")))
    if keys["removed_prefix"]:
        rows.append(("prefix removed", repr(keys["removed_prefix"])))
    if keys["ignored"]:
        rows.append(("keys ignored", ", ".join(keys["ignored"]) + " (not the model's)"))
    if keys["filled"]:
        rows.append(("keys filled", ", ".join(keys["filled"]) + " (not in the file; set to 0)"))
    return rows
