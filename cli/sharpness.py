"""``landscape sharpness``: top eigenvalues, trace, spectral density of a checkpoint's Hessian."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import click

from landscape.cli.common import (
    echo_json,
    echo_table,
    output_options,
    seed_option,
    source_options,
)
from landscape.cli.result_folder import check_batch_size, check_out_folder, check_replaceable, remove_stale
from landscape.device import resolve_device
from landscape.hessian.distributed import shard_from_environment
from landscape.hessian.sharpness import SharpnessResult
from landscape.hessian.sharpness import sharpness as compute_sharpness
from landscape.io.atomic import atomic_path, atomic_save_npz, atomic_write_json
from landscape.loading import objective_from_checkpoint
from landscape.runs import weights_digest

STAGE_FOLDER = ".sharpness-stages"
DENSITY_FILES = ("density.npz", "density.png")


def _fmt(v: float | None) -> str:
    return "nan" if v is None else f"{v:.6g}"


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("checkpoint", type=click.Path(path_type=Path))
@source_options
@click.option("--top-k", default=5, show_default=True, type=int, help="Number of eigenvalues.")
@click.option(
    "--which",
    default="LA",
    show_default=True,
    type=click.Choice(["LA", "SA", "LM"]),
    help="LA largest, SA smallest (negative curvature), LM largest magnitude.",
)
@click.option("--tol", default=1e-6, show_default=True, type=float, help="Relative Ritz residual tolerance.")
@click.option("--max-matvecs", default=None, type=int, help="Lanczos budget of Hessian-vector products.")
@click.option("--trace", "with_trace", is_flag=True, help="Estimate the trace.")
@click.option(
    "--trace-method",
    default="hutch++",
    show_default=True,
    type=click.Choice(["hutch++", "hutchinson", "xtrace"]),
    help="Trace estimator.",
)
@click.option(
    "--trace-matvecs", default=99, show_default=True, type=int, help="Products of the trace estimate."
)
@click.option(
    "--trace-rtol", default=None, type=float, help="Stop the trace at this relative standard error."
)
@click.option(
    "--density", is_flag=True, help="Spectral density (SLQ): density.npz and density.png in -o DIR."
)
@click.option("--density-runs", default=4, show_default=True, type=int, help="SLQ runs.")
@click.option("--density-steps", default=40, show_default=True, type=int, help="Lanczos steps per SLQ run.")
@click.option("--per-layer", is_flag=True, help="Top eigenvalue and trace of each parameter tensor.")
@click.option(
    "--per-layer-by",
    default="param",
    show_default=True,
    type=click.Choice(["param", "module"]),
    help="Group of --per-layer: each tensor or each module.",
)
@click.option(
    "--per-batch", default=None, type=int, metavar="B", help="Top-5 of each of the first B batches."
)
@click.option(
    "--backend",
    default="landscape",
    show_default=True,
    type=click.Choice(["landscape", "pyhessian"]),
    help="Run the same quantities through PyHessian to check against it.",
)
@click.option(
    "--hvp-mode",
    default="auto",
    show_default=True,
    type=click.Choice(["auto", "rev-rev", "fwd-rev"]),
    help="Hessian-vector product: reverse-over-reverse or forward-over-reverse.",
)
@click.option(
    "--cache-graphs",
    is_flag=True,
    help="Keep every batch's gradient graph between products: faster rev-rev products when the "
    "activations of all --samples fit in memory.",
)
@click.option(
    "--bn-mode",
    default="eval",
    show_default=True,
    type=click.Choice(["eval", "train"]),
    help="Batch norm statistics: running (eval) or per batch (train).",
)
@click.option(
    "--allow-nondeterministic", is_flag=True, help="Skip the two-pass determinism check of the data."
)
@seed_option
@click.option(
    "--overwrite", is_flag=True, help="Replace a result in -o DIR that was made with other settings."
)
@output_options
def sharpness(
    checkpoint: Path,
    top_k: int,
    which: str,
    tol: float,
    max_matvecs: int | None,
    with_trace: bool,
    trace_method: str,
    trace_matvecs: int,
    trace_rtol: float | None,
    density: bool,
    density_runs: int,
    density_steps: int,
    per_layer: bool,
    per_layer_by: str,
    per_batch: int | None,
    backend: str,
    hvp_mode: str,
    cache_graphs: bool,
    bn_mode: str,
    allow_nondeterministic: bool,
    seed: int,
    overwrite: bool,
    out: Path | None,
    as_json: bool,
    quiet: bool,
    source: dict[str, Any],
) -> None:
    """Hessian sharpness of CHECKPOINT on a fixed sample: top eigenvalues, trace, density.

    Batch norm uses running statistics (the Hessian of the evaluation-mode training loss). Under
    torchrun every rank takes a shard of the data and every product is all-reduced. With -o DIR each
    finished stage (eigenvalues, trace, density, per layer, per batch) is kept in DIR, so rerunning
    an interrupted command reuses the stages whose checkpoint, data and settings match. A result in
    DIR made with other settings is never replaced without --overwrite.

    \b
    Eigenvalues are listed most-wanted first: --which LA descending, SA ascending (most negative
    first), LM by decreasing magnitude.

    \b
    Examples:
      landscape sharpness runs/sgd/final.pt --samples 2048 --top-k 5 --trace -o out/
      landscape sharpness ckpt.pt --which SA --top-k 3 --json
      landscape sharpness ckpt.pt --trace --trace-rtol 0.01 --density -o out/
      landscape sharpness ckpt.pt --per-batch 10 --batch-size 128
      landscape sharpness ckpt.pt --backend pyhessian --trace --trace-method hutchinson
      torchrun --nproc-per-node 2 -m landscape sharpness ckpt.pt --device cpu
    """
    check_batch_size(source["batch_size"])
    check_out_folder(out)
    dev = resolve_device(source["device"])
    shard = shard_from_environment(dev)
    objective, ckpt, spec = objective_from_checkpoint(
        checkpoint,
        **{**source, "device": dev},
        seed=seed,
        bn_mode=bn_mode,
        shard=shard,
    )
    digest = weights_digest(ckpt.state_dict)
    # what the result depends on; device, output and progress options are left out
    settings: dict[str, Any] = {
        "checkpoint_digest": digest,
        "model": ckpt.model_spec.to_dict() if ckpt.model_spec else None,
        "data": spec.to_dict(),
        "batch_size": source["batch_size"],
        "dtype": str(source["dtype"]),
        "bn_mode": bn_mode,
        "top_k": top_k,
        "which": which,
        "tol": tol,
        "max_matvecs": max_matvecs,
        "trace": {"method": trace_method, "matvecs": trace_matvecs, "rtol": trace_rtol}
        if with_trace or trace_rtol is not None
        else None,
        "density": {"runs": density_runs, "steps": density_steps} if density else None,
        "per_layer": per_layer_by if per_layer else None,
        "per_batch": per_batch,
        "backend": backend,
        "hvp_mode": hvp_mode,
        "seed": seed,
        "allow_nondeterministic": allow_nondeterministic,
    }
    if out is not None:
        check_replaceable(out / "sharpness.json", settings, companions=DENSITY_FILES, overwrite=overwrite)
    quiet = quiet or as_json or (shard is not None and shard[0] != 0)
    # With -o, finished stages are kept so an interrupted run resumes (one process only: under
    # torchrun every rank must take part in every product).
    stage_dir = out / STAGE_FOLDER if out is not None and (shard is None or shard[1] == 1) else None
    result = compute_sharpness(
        objective,
        top_k=top_k,
        which=which,
        tol=tol,
        max_matvecs=max_matvecs,
        with_trace=with_trace,
        trace_method=trace_method,
        trace_matvecs=trace_matvecs,
        trace_rtol=trace_rtol,
        density=density,
        density_runs=density_runs,
        density_steps=density_steps,
        per_layer_by=per_layer_by if per_layer else None,
        per_batch=per_batch,
        backend=backend,
        mode=hvp_mode,
        cache_graphs=cache_graphs,
        seed=seed,
        allow_nondeterministic=allow_nondeterministic,
        resume_dir=stage_dir,
        quiet=quiet,
    )
    if shard is not None and shard[0] != 0:
        return  # rank 0 reports
    doc = {
        "checkpoint": str(checkpoint),
        "checkpoint_digest": digest,
        "data": spec.to_dict(),
        "batch_size": source["batch_size"],
        "world_size": shard[1] if shard else 1,
        **result.to_dict(),
        "settings": settings,
    }
    if out is not None:
        atomic_write_json(out / "sharpness.json", doc)
        if result.density is not None:
            _write_density(out, result)
        else:  # left by a result this one replaced (--overwrite): it would contradict density: null
            remove_stale(out, DENSITY_FILES)
        if stage_dir is not None:
            shutil.rmtree(stage_dir, ignore_errors=True)
    if as_json:
        echo_json(doc)
    else:
        _print_table(result, out)


def _write_density(out: Path, result: SharpnessResult) -> None:
    from landscape.plot.spectrum import plot_density

    d = result.density
    assert d is not None
    atomic_save_npz(
        out / "density.npz", nodes=d.nodes, weights=d.weights, grid=d.grid, density=d.density, sigma=d.sigma
    )
    marked = {"LA": "largest eigenvalues", "SA": "smallest eigenvalues", "LM": "largest |eigenvalues|"}
    fig = plot_density(d, eigenvalues=result.eigenvalues, eigenvalues_label=marked[result.which])
    with atomic_path(out / "density.png", suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120, format="png")


def _print_table(r: SharpnessResult, out: Path | None) -> None:
    rows: list[tuple[str, object]] = []
    for i, (lam, res, ok) in enumerate(zip(r.eigenvalues, r.residuals, r.converged), start=1):
        rows.append(
            (
                f"lambda_{i}",
                f"{_fmt(float(lam))}  (residual {_fmt(float(res))}{'' if ok else ', NOT converged'})",
            )
        )
    if r.trace is not None:
        t = r.trace
        rows.append(("trace", f"{_fmt(t.estimate)} +- {_fmt(t.stderr)}  ({t.method}, {t.matvecs} matvecs)"))
    if r.density is not None:
        rows.append(("density", f"SLQ {r.density.nodes.shape[0]} runs x {r.density.nodes.shape[1]} nodes"))
    if r.per_batch is not None:
        b = r.per_batch
        rows.append(
            (
                f"per-batch ({b.batches} x {b.batch_size})",
                f"mean positive {_fmt(b.mean_positive)}, max {_fmt(b.max)}, negative {b.percent_negative:.1f}%",
            )
        )
    if r.per_layer is not None:
        for e in r.per_layer.layers:
            rows.append(
                (
                    f"  {e.name}",
                    f"lambda_max {_fmt(e.top_eigenvalue)}, trace {_fmt(e.trace)} +- {_fmt(e.trace_stderr)}",
                )
            )
    rows += [
        ("matvecs", r.matvecs),
        ("samples", r.samples),
        ("parameters", f"{r.num_params:,}"),
        ("backend / hvp", f"{r.backend} / {r.hvp_mode}"),
        ("device / dtype", f"{r.device} / {r.dtype}"),
        ("bn_mode", r.bn_mode),
        ("seed", r.seed),
        ("seconds", f"{r.seconds:.2f}"),
    ]
    for n in r.notes:
        rows.append(("note", n))
    if out is not None:
        rows.append(("written", str(out / "sharpness.json")))
    echo_table(rows)
