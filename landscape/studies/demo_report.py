"""The demo's report template: what ``landscape demo`` states, from a :class:`DemoResult`.

:func:`write_demo_report` draws the figures (:mod:`landscape.plot`), writes ``findings.json`` (every
paired comparison of the headline metrics, as numbers and a sentence) and fills a
:class:`~landscape.report.Report` (``report.md`` and the self-contained ``report.html``). The
numbers come from the grouping of :mod:`landscape.runs.grouping`, as ``landscape compare`` makes it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from landscape.io.atomic import atomic_write_json, save_figure
from landscape.report import Report, fmt_interval, verdict
from landscape.runs.grouping import GroupSummary, seed_study_table
from landscape.studies.demo_plan import DemoResult

#: The metrics whose paired differences the report states.
FINDING_METRICS = ("lambda_max", "trace", "sharpness_average", "sharpness_worst", "test_accuracy")
#: The late step statistics of SAM's update against SGD's.
LATE_STATS = ("grad_norm_ratio_late", "cosine_late", "frac_larger_late")


def findings(result: DemoResult) -> list[dict[str, Any]]:
    """Every paired comparison of :data:`FINDING_METRICS`, as numbers (``paired.csv``'s columns) and a
    sentence."""
    out = []
    for p in result.grouping.paired:
        if p.metric not in FINDING_METRICS:
            continue
        s = p.stats
        sentence = (
            f"{p.metric}: {p.group} - {p.baseline} = {fmt_interval(s.mean, s.ci95_low, s.ci95_high)} "
            f"(paired over seeds {' '.join(map(str, p.seeds))}, n={s.n}): {verdict(s.ci95_low, s.ci95_high)}"
        )
        out.append({**p.row(), "sentence": sentence})
    return out


def _is_magnitude_vs_direction(f: dict[str, Any]) -> bool:
    return f["group"].startswith("SAM-magnitude") and f["baseline"].startswith("SAM-direction")


def _summary(found: Sequence[dict[str, Any]]) -> str:
    """One sentence: in how many magnitude-vs-direction comparisons SAM-magnitude is the flatter one."""
    lam = [f for f in found if _is_magnitude_vs_direction(f) and f["metric"] == "lambda_max"]
    if not lam:
        return "This configuration has no SAM-magnitude / SAM-direction pair."
    lower = sum(f["mean"] < 0 for f in lam)
    sure = sum(f["ci95_high"] < 0 for f in lam)
    higher_sure = sum(f["ci95_low"] > 0 for f in lam)
    return (
        f"SAM-magnitude has the smaller mean lambda_max than SAM-direction in {lower} of {len(lam)} "
        f"(rho, decomposition) settings; the 95% interval of the paired difference lies below 0 in {sure} "
        f"and above 0 in {higher_sure} of them."
    )


def _draw_figures(result: DemoResult, fig_dir: Path) -> dict[str, Path]:
    from landscape.analysis.result_file import read_sharpness_file
    from landscape.plot import plot_density, plot_surface_1d, plot_surfaces_2d
    from landscape.plot.groups import plot_group_panels, plot_paired_differences
    from landscape.surface import Surface

    grouping = result.grouping
    figs: dict[str, Path] = {}
    panels = plot_group_panels(grouping, ("test_accuracy", "lambda_max", "trace"))
    figs["groups"] = save_figure(panels, fig_dir / "groups.png")
    paired = plot_paired_differences(grouping, "lambda_max")
    figs["paired"] = save_figure(paired, fig_dir / "paired_lambda_max.png")
    fig = None
    for key, label in (("sgd", "SGD"), ("sam", f"SAM rho={result.settings.showcase_rho:g}")):
        density = read_sharpness_file(result.showcase[key] / "sharpness.json").result.density
        if density is not None:
            fig = plot_density(
                density,
                ax=None if fig is None else fig.axes[0],
                label=label,
                title=f"Hessian eigenvalue density (SLQ), final weights, seed {result.settings.seeds[0]}",
            )
    if fig is not None:
        figs["density"] = save_figure(fig, fig_dir / "density.png")
    surfaces = [Surface.load(result.surfaces["sgd"]), Surface.load(result.surfaces["sam"])]
    titles = ["SGD", f"SAM rho={result.settings.showcase_rho:g}"]
    for key, f in zip(("surface_sgd", "surface_sam"), plot_surfaces_2d(surfaces, labels=titles)):
        figs[key] = save_figure(f, fig_dir / f"{key}.png")
    line = Surface.load(result.surfaces["line"])
    figs["interpolation"] = save_figure(
        plot_surface_1d(line, title="loss on the line from SGD (0) to SAM (1)"), fig_dir / "interpolation.png"
    )
    return figs


def write_demo_report(result: DemoResult) -> dict[str, Path]:
    """Figures, ``findings.json``, ``report.md`` and ``report.html`` of a finished demo.

    ``findings.json`` follows the JSON policy of :mod:`landscape.io.jsonio` (NaN -> ``null``,
    +/-inf -> ``"inf"``/``"-inf"``).
    """
    out = result.out_dir
    figs = _draw_figures(result, out / "figures")
    found = findings(result)
    paths = {"findings.json": atomic_write_json(out / "findings.json", found)}
    rel = {k: str(p.relative_to(out)) for k, p in figs.items()}
    rep = Report(
        f"landscape demo: does SAM find flat minima by direction or by magnitude? ({result.settings.data})"
    )
    _add_finding(rep, result, found, rel)
    _add_groups(rep, result, rel)
    _add_figures(rep, rel)
    _add_settings_and_files(rep, result)
    paths.update(rep.write(out))
    paths.update({f"figures/{p.name}": p for p in figs.values()})
    return paths


def _add_finding(
    rep: Report, result: DemoResult, found: Sequence[dict[str, Any]], rel: dict[str, str]
) -> None:
    """What was run, the one-sentence answer and the paired comparisons behind it."""
    s = result.settings
    rep.paragraph(
        f"{len(result.rows)} runs on {s.data}: {', '.join(s.methods)} at rho {', '.join(f'{r:g}' for r in s.rhos)}"
        f" (decompositions: {', '.join(s.decompositions)}), seeds {', '.join(map(str, s.seeds))}. "
        "Intervals are 95% Student-t intervals over seeds; differences are paired by seed (same "
        "initialization and data order)."
    )
    rep.heading("Finding")
    rep.paragraph(_summary(found))
    rep.paragraph("SAM-magnitude against SAM-direction (same rho and decomposition, paired by seed):")
    rep.bullets(
        [f["sentence"] for f in found if _is_magnitude_vs_direction(f) and f["metric"] != "test_accuracy"]
        or ["no magnitude-vs-direction pair in this configuration"]
    )
    rep.paragraph("Against SGD (paired by seed):")
    rep.bullets([f["sentence"] for f in found if f["baseline"] == "SGD" and f["metric"] != "trace"])
    rep.figure(rel["paired"], "lambda_max differences paired by seed, with 95% intervals")


def _interval_cells(group: GroupSummary, metrics: Sequence[str]) -> list[str]:
    cells = []
    for m in metrics:
        s = group.stats.get(m)
        cells.append("n/a" if s is None else fmt_interval(s.mean, s.ci95_low, s.ci95_high))
    return cells


def _add_groups(rep: Report, result: DemoResult, rel: dict[str, str]) -> None:
    """Per-group intervals of accuracy and curvature, the seed-study table and SAM's update statistics."""
    rep.heading("Groups")
    metrics = ("test_accuracy", "lambda_max", "trace", "sharpness_average", "sharpness_worst")
    header = ["group", "n", *(f"{m.replace('_', ' ')} mean [95% CI]" for m in metrics)]
    groups = result.grouping.groups
    rep.table(header, [[g.group, g.n, *_interval_cells(g, metrics)] for g in groups])
    rep.paragraph("lambda_max as mean ± std over seeds, in the layout of the seed study:")
    rep.table(*seed_study_table(result.grouping, "lambda_max"))
    rep.figure(rel["groups"], "group means with 95% t-intervals; dots are single seeds")
    rep.paragraph(
        "How SAM's update differs from SGD's on the same batch, averaged over the last 10% of the steps "
        "(mean [95% CI] over seeds): ||g_SAM|| / ||g_SGD||, cos(g_SAM, g_SGD), and the fraction of "
        "coordinates with |g_SAM_i| > |g_SGD_i|."
    )
    rep.table(
        ["group", "norm ratio", "cosine", "fraction larger"],
        [[g.group, *_interval_cells(g, LATE_STATS)] for g in groups if g.optimizer != "sgd"],
    )


def _add_figures(rep: Report, rel: dict[str, str]) -> None:
    """The spectrum, the two surfaces and the SGD -> SAM line."""
    rep.heading("Spectrum, surfaces and interpolation")
    if "density" in rel:
        rep.figure(
            rel["density"], "Hessian eigenvalue density of SGD and SAM (stochastic Lanczos quadrature)"
        )
    rep.figure(
        rel["surface_sgd"], "SGD: 2D loss surface, filter-normalized random directions (shared colour scale)"
    )
    rep.figure(rel["surface_sam"], "SAM: 2D loss surface, same seed of directions and colour scale")
    rep.figure(
        rel["interpolation"], "loss and accuracy on the straight line from the SGD to the SAM solution"
    )


def _add_settings_and_files(rep: Report, result: DemoResult) -> None:
    """Every setting the numbers depend on, and where the files are."""
    s = result.settings
    rep.heading("Settings")
    rep.bullets(
        [
            f"model {s.model['name']} {s.model['kwargs']}; data {s.data_name}",
            f"SGD base: lr {s.lr:g}, momentum {s.momentum:g}, weight decay {s.weight_decay:g}, "
            f"batch {s.batch_size}, {s.epochs} epochs",
            f"lambda_max: Lanczos (tol {s.lanczos_tol:g}); trace: Hutch++ ({s.trace_matvecs} products); "
            f"both on the same {s.sharpness_samples} training examples (seed {s.analysis_seed}), batch norm "
            "in eval mode",
            f"density: SLQ, {s.density_runs} runs x {s.density_steps} steps; surfaces: {s.surface_points}x"
            f"{s.surface_points} grid on [-{s.surface_range:g}, {s.surface_range:g}]^2, directions seed "
            f"{s.analysis_seed}; interpolation: {s.interpolation_points} points on [-0.5, 1.5]",
            f"Lanczos converged for {sum(r['lambda_max_converged'] for r in result.rows)} of "
            f"{len(result.rows)} runs; median relative standard error of the trace "
            f"{_median_rel_stderr(result.rows):.1%}",
            f"wall time of this invocation: {result.seconds:.0f} s",
        ]
    )
    rep.heading("Files")
    rep.bullets(
        [
            "runs/<run>/: run folders (config.json, metrics.csv, steps.csv, final.pt, sharpness.json)",
            "runs.csv, groups.csv, paired.csv, findings.json: the numbers of this report",
            "surfaces/*.npz: the surfaces; figures/*.png: the figures",
        ]
    )


def _median_rel_stderr(rows: Sequence[dict[str, Any]]) -> float:
    rel = [
        abs(r["trace_stderr"] / r["trace"])
        for r in rows
        if r.get("trace") and math.isfinite(r["trace"]) and math.isfinite(r["trace_stderr"])
    ]
    return float(sorted(rel)[len(rel) // 2]) if rel else float("nan")
