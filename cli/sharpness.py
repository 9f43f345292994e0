"""``landscape sharpness``: top eigenvalues, trace, spectral density of a checkpoint's Hessian."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from landscape.analysis import SharpnessOptions, SharpnessResult
from landscape.analysis import sharpness as compute_sharpness
from landscape.analysis.options import BACKENDS
from landscape.analysis.result_file import (
    COMPANION_FILES,
    SHARPNESS_FILE,
    SharpnessFile,
    resume_folder,
    sharpness_settings,
    write_sharpness_file,
)
from landscape.cli.common import (
    echo_json,
    echo_table,
    output_options,
    seed_option,
    source_options,
)
from landscape.cli.result_folder import check_batch_size, check_out_folder, check_replaceable
from landscape.cli.train import echo_warnings
from landscape.device import resolve_device
from landscape.distributed import process_group
from landscape.errors import RestartSpreadWarning
from landscape.hessian.blocks import block_patterns
from landscape.hessian.krylov import WHICH
from landscape.hessian.layer_blocks import GROUP_BY
from landscape.hessian.operator import HVP_METHODS, HVP_MODES
from landscape.hessian.trace_estimation import TRACE_METHODS
from landscape.measures import MEASURE_NAMES, MeasureOptions, parse_measure_names
from landscape.measures.options import PERTURB_NORMS
from landscape.objective.loading import objective_from_checkpoint


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
    type=click.Choice(WHICH),
    help="LA largest, SA smallest (negative curvature), LM largest magnitude.",
)
@click.option("--tol", default=1e-6, show_default=True, type=float, help="Relative Ritz residual tolerance.")
@click.option("--max-matvecs", default=None, type=int, help="Lanczos budget of Hessian-vector products.")
@click.option(
    "--eigen-block",
    default=None,
    metavar="N|auto",
    help="Block Lanczos with blocks of N products (one data pass each); 1 or unset: single-vector "
    "Lanczos; auto: whichever the benchmark found faster (single-vector so far).",
)
@click.option("--trace", "with_trace", is_flag=True, help="Estimate the trace.")
@click.option(
    "--trace-method",
    default="hutch++",
    show_default=True,
    type=click.Choice(TRACE_METHODS),
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
    type=click.Choice(GROUP_BY),
    help="Group of --per-layer: each tensor or each module.",
)
@click.option(
    "--blocks",
    default=None,
    metavar="GLOB[,GLOB...]|auto",
    help="Per-block spectra: top-k and density (--density-runs x --density-steps) of the Hessian of "
    "each block (one per glob of parameter names; auto: per transformer layer attention, MLP and "
    "norms, plus embeddings; per top-level module otherwise) and their Jensen-Shannon distances: "
    'sharpness.json "blocks" and blocks.png in -o DIR.',
)
@click.option(
    "--per-batch", default=None, type=int, metavar="B", help="Top-5 of each of the first B batches."
)
@click.option(
    "--measure",
    "measure",
    default=None,
    metavar="NAME[,NAME...]",
    help=f"Sharpness measures beyond the spectrum: {', '.join(MEASURE_NAMES)}.",
)
@click.option(
    "--rho", default=0.05, show_default=True, type=float, help="Radius of worst/average (measures)."
)
@click.option(
    "--perturb-norm",
    default="l2",
    show_default=True,
    type=click.Choice(PERTURB_NORMS),
    help="Norm of the worst-case constraint.",
)
@click.option("--adaptive", is_flag=True, help="Perturbations in units of |w| (Kwon et al. 2021).")
@click.option(
    "--m", "m", default=None, type=int, help="Batch size of m-sharpness (default: the whole sample)."
)
@click.option(
    "--steps",
    default=20,
    show_default=True,
    type=int,
    help="Ascent steps of worst and keskar. The ascent is local: 20 steps can end several percent "
    "below the maximum when curvature dominates (large --rho); raise it (100 steps x 8 restarts is "
    "exact on a quadratic) when the restarts disagree or the measure's details say stalled: false.",
)
@click.option(
    "--restarts",
    default=1,
    show_default=True,
    type=int,
    help="Random starts of the ascent; the best is kept. With 2 or more, worst reports each restart's "
    "value and warns when they differ by more than 1%: then raise --steps (first) or --restarts.",
)
@click.option(
    "--mc-samples", default=64, show_default=True, type=int, help="Monte Carlo draws of average, pac-bayes."
)
@click.option("--eps", default=None, type=float, help="random-max scale (0.01) or keskar box (1e-3).")
@click.option("--layer", default=None, help="Linear layer of relative-flatness (module name).")
@click.option(
    "--backend",
    default="landscape",
    show_default=True,
    type=click.Choice(BACKENDS),
    help="Run the same quantities through PyHessian to check against it.",
)
@click.option(
    "--hvp-mode",
    default="auto",
    show_default=True,
    type=click.Choice(HVP_MODES),
    help="Hessian-vector product: reverse-over-reverse or forward-over-reverse.",
)
@click.option(
    "--hvp",
    default="exact",
    show_default=True,
    type=click.Choice(HVP_METHODS),
    help="exact: second derivatives, with attention on its math kernel (an op without a double "
    "backward switches to finite-difference, with a warning); finite-difference: central differences "
    "of gradients (first derivatives only, a gradient's memory). Recorded in sharpness.json.",
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
    eigen_block: str | None,
    with_trace: bool,
    trace_method: str,
    trace_matvecs: int,
    trace_rtol: float | None,
    density: bool,
    density_runs: int,
    density_steps: int,
    per_layer: bool,
    per_layer_by: str,
    blocks: str | None,
    per_batch: int | None,
    measure: str | None,
    rho: float,
    perturb_norm: str,
    adaptive: bool,
    m: int | None,
    steps: int,
    restarts: int,
    mc_samples: int,
    eps: float | None,
    layer: str | None,
    backend: str,
    hvp_mode: str,
    hvp: str,
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
    finished stage (eigenvalues, trace, density, per layer, per batch, each --measure) is kept in DIR,
    so rerunning an interrupted command reuses the stages whose checkpoint, data and settings match. A
    result in DIR made with other settings is never replaced without --overwrite.

    \b
    --measure adds sharpness beyond the spectrum (sharpness.json "measures", a table row each with
    value +- standard error); overlap (top-5 eigenspace) reuses the eigenvectors of --which LA with
    --top-k >= 5 instead of running Lanczos again.

    \b
    Eigenvalues are listed most-wanted first: --which LA descending, SA ascending (most negative
    first), LM by decreasing magnitude.

    \b
    Examples:
      landscape sharpness runs/sgd/final.pt --samples 2048 --top-k 5 --trace -o out/
      landscape sharpness ckpt.pt --which SA --top-k 3 --json
      landscape sharpness ckpt.pt --top-k 20 --eigen-block 4
      landscape sharpness ckpt.pt --trace --trace-rtol 0.01 --density -o out/
      landscape sharpness ckpt.pt --per-batch 10 --batch-size 128
      landscape sharpness ckpt.pt --blocks auto --top-k 3 -o out/
      landscape sharpness ckpt.pt --blocks 'transformer.h.0.attn.*,transformer.h.0.mlp.*' --hvp finite-difference
      landscape sharpness ckpt.pt --measure worst,average --adaptive --rho 0.05 -o out/
      landscape sharpness ckpt.pt --backend pyhessian --trace --trace-method hutchinson
      torchrun --nproc-per-node 2 -m landscape sharpness ckpt.pt --device cpu
    """
    check_batch_size(source["batch_size"])
    check_out_folder(out)
    # under torchrun: join the group until the command ends, each rank with a shard of the data
    group = click.get_current_context().with_resource(process_group(source["device"]))
    dev = resolve_device(group.device)
    shard = group.shard
    objective, ckpt, spec = objective_from_checkpoint(
        checkpoint,
        **{**source, "device": dev},
        seed=seed,
        bn_mode=bn_mode,
        shard=shard,
    )
    options = SharpnessOptions(
        top_k=top_k,
        which=which,
        tol=tol,
        max_matvecs=max_matvecs,
        eigen_block=_eigen_block(eigen_block),
        with_trace=with_trace,
        trace_method=trace_method,
        trace_matvecs=trace_matvecs,
        trace_rtol=trace_rtol,
        density=density,
        density_runs=density_runs,
        density_steps=density_steps,
        per_layer_by=per_layer_by if per_layer else None,
        per_batch=per_batch,
        measures=tuple(parse_measure_names(measure)) if measure is not None else (),
        measure_options=MeasureOptions(
            rho=rho,
            perturb_norm=perturb_norm,
            adaptive=adaptive,
            m=m,
            steps=steps,
            restarts=restarts,
            mc_samples=mc_samples,
            eps=eps,
            layer=layer,
        ),
        backend=backend,
        mode=hvp_mode,
        hvp=hvp,
        blocks=block_patterns(blocks) if blocks is not None else None,
        seed=seed,
        allow_nondeterministic=allow_nondeterministic,
        cache_graphs=cache_graphs,
    )
    settings = sharpness_settings(
        options, ckpt, spec, batch_size=source["batch_size"], dtype=objective.dtype, bn_mode=bn_mode
    )
    if out is not None:
        check_replaceable(out / SHARPNESS_FILE, settings, companions=COMPANION_FILES, overwrite=overwrite)
    quiet = quiet or as_json or (shard is not None and shard[0] != 0)
    world_size = shard[1] if shard else 1
    stage_dir = resume_folder(out, world_size=world_size) if out is not None else None
    with echo_warnings(RestartSpreadWarning, "sharpness"):
        result = compute_sharpness(objective, options, resume_dir=stage_dir, quiet=quiet)
    if shard is not None and shard[0] != 0:
        return  # rank 0 reports
    record = SharpnessFile.from_settings(result, settings, checkpoint=checkpoint, world_size=world_size)
    if out is not None:
        write_sharpness_file(
            out, record, density_figure=_density_figure(result), blocks_figure=_blocks_figure(result)
        )
    if as_json:
        echo_json(record.to_dict())
    else:
        _print_table(result, out)


def _eigen_block(text: str | None) -> int | str | None:
    """``--eigen-block`` as the library takes it: an integer, ``'auto'``, or the text as given (the
    library's check names it)."""
    if text is None or text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        return text


def _density_figure(result: SharpnessResult) -> Any:
    """``density.png``: the density with the eigenvalues found marked (``None`` without a density)."""
    if result.density is None:
        return None
    from landscape.plot.spectrum import plot_density

    marked = {"LA": "largest eigenvalues", "SA": "smallest eigenvalues", "LM": "largest |eigenvalues|"}
    return plot_density(
        result.density, eigenvalues=result.eigenvalues, eigenvalues_label=marked[result.which]
    )


def _blocks_figure(result: SharpnessResult) -> Any:
    """``blocks.png``: the blocks' densities and their Jensen-Shannon distances (``None`` without)."""
    if result.blocks is None:
        return None
    from landscape.plot.spectrum import plot_block_spectra

    return plot_block_spectra(result.blocks)


def _product_rows(r: SharpnessResult) -> list[tuple[str, object]]:
    """How the products were formed (``hvp_info``), as table rows."""
    info = r.hvp_info
    if not info:
        return []
    product = info.get("hvp")
    if info.get("hvp_fallback_op"):
        product = f"{product} (fallback: {info['hvp_fallback_op']} has no double backward)"
    return [("product / attention", f"{product} / {info.get('attention_backend')}")]


def _print_table(r: SharpnessResult, out: Path | None) -> None:
    rows: list[tuple[str, object]] = []
    if r.degenerate is not None:  # first: the numbers below are not a flat minimum
        rows.append(("WARNING", f"degenerate curvature: {r.degenerate}"))
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
    for name, m in (r.measures or {}).items():
        spread = "" if m.stderr is None else f" +- {_fmt(m.stderr)}"
        rows.append((f"measure {name}", f"{_fmt(m.value)}{spread}"))
    if r.blocks is not None:
        rows.append(
            ("blocks: mean JS distance", f"{_fmt(r.blocks.mean_js_distance)} ({len(r.blocks.blocks)} blocks)")
        )
        for b in r.blocks.blocks:
            top = ", ".join(_fmt(float(v)) for v in b.eigenvalues)
            rows.append((f"  {b.name}", f"eigenvalues {top}  ({b.num_params:,} parameters)"))
    if r.per_layer is not None:
        for e in r.per_layer.layers:
            rows.append(
                (
                    f"  {e.name}",
                    f"lambda_max {_fmt(e.top_eigenvalue)}, trace {_fmt(e.trace)} +- {_fmt(e.trace_stderr)}"
                    + (f"  (tied: also {', '.join(e.tied_to)})" if e.tied_to else ""),
                )
            )
    rows += [
        ("matvecs", r.matvecs),
        ("samples", r.samples),
        ("parameters", f"{r.num_params:,}"),
        ("backend / hvp", f"{r.backend} / {r.hvp_mode}"),
        *_product_rows(r),
        ("device / dtype", f"{r.device} / {r.dtype}"),
        ("bn_mode", r.bn_mode),
        ("seed", r.seed),
        ("seconds", f"{r.seconds:.2f}"),
    ]
    for n in r.notes:
        rows.append(("note", n))
    if out is not None:
        rows.append(("written", str(out / SHARPNESS_FILE)))
    echo_table(rows)
