"""Reports as data: a list of blocks rendered to Markdown and to one self-contained HTML file.

:class:`Report` holds headings, paragraphs, lists, tables and figures (PNG files beside the report).
``to_markdown`` links the figures; ``to_html`` embeds them as base64 PNG so the HTML file can be sent
on its own. :func:`write_demo_report` turns a :class:`~landscape.studies.demo.DemoResult` into figures,
``findings.json``, ``report.md`` and ``report.html`` (all written atomically).
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from landscape.io.atomic import atomic_write_json, atomic_write_text, save_figure

if TYPE_CHECKING:
    from landscape.studies.demo import DemoResult

_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;line-height:1.45}"
    "table{border-collapse:collapse;margin:1rem 0;font-size:.9rem}"
    "th,td{border:1px solid #bbb;padding:.25rem .5rem;text-align:right}"
    "th:first-child,td:first-child{text-align:left}"
    "img{max-width:100%}figure{margin:1rem 0}figcaption{font-size:.9rem;color:#444}"
    "code,pre{background:#f4f4f4}"
)


@dataclass
class Report:
    """An ordered list of blocks; figures are paths relative to the report's folder."""

    title: str
    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def heading(self, text: str, level: int = 2) -> None:
        self.blocks.append(("heading", (level, text)))

    def paragraph(self, text: str) -> None:
        self.blocks.append(("paragraph", text))

    def bullets(self, items: Sequence[str]) -> None:
        self.blocks.append(("bullets", list(items)))

    def table(self, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self.blocks.append(("table", ([str(h) for h in header], [[str(c) for c in r] for r in rows])))

    def figure(self, relpath: str, caption: str) -> None:
        self.blocks.append(("figure", (relpath, caption)))

    def to_markdown(self) -> str:
        """GitHub-flavoured Markdown; figures as relative image links."""
        out = [f"# {self.title}", ""]
        for kind, body in self.blocks:
            if kind == "heading":
                out += [f"{'#' * body[0]} {body[1]}", ""]
            elif kind == "paragraph":
                out += [body, ""]
            elif kind == "bullets":
                out += [f"- {item}" for item in body] + [""]
            elif kind == "table":
                header, rows = body
                out.append("| " + " | ".join(_md_cell(h) for h in header) + " |")
                out.append("|" + "|".join("---" for _ in header) + "|")
                out += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows]
                out.append("")
            elif kind == "figure":
                out += [f"![{body[1]}]({body[0]})", "", f"*{body[1]}*", ""]
        return "\n".join(out)

    def to_html(self, base: str | Path) -> str:
        """One HTML page with every figure embedded (``base``: the folder the figure paths start from)."""
        esc = html.escape
        out = [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{esc(self.title)}</title><style>{_CSS}</style></head><body>",
            f"<h1>{esc(self.title)}</h1>",
        ]
        for kind, body in self.blocks:
            if kind == "heading":
                out.append(f"<h{body[0]}>{esc(body[1])}</h{body[0]}>")
            elif kind == "paragraph":
                out.append(f"<p>{esc(body)}</p>")
            elif kind == "bullets":
                out.append("<ul>" + "".join(f"<li>{esc(i)}</li>" for i in body) + "</ul>")
            elif kind == "table":
                header, rows = body
                out.append(
                    "<table><thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr></thead>"
                )
                out.append(
                    "<tbody>"
                    + "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows)
                    + "</tbody></table>"
                )
            elif kind == "figure":
                data = base64.b64encode((Path(base) / body[0]).read_bytes()).decode("ascii")
                out.append(
                    f'<figure><img alt="{esc(body[1])}" src="data:image/png;base64,{data}">'
                    f"<figcaption>{esc(body[1])}</figcaption></figure>"
                )
        out.append("</body></html>")
        return "\n".join(out) + "\n"

    def write(self, out_dir: str | Path, stem: str = "report") -> dict[str, Path]:
        """Write ``stem.md`` and the self-contained ``stem.html`` into ``out_dir``."""
        out = Path(out_dir)
        return {
            f"{stem}.md": atomic_write_text(out / f"{stem}.md", self.to_markdown() + "\n"),
            f"{stem}.html": atomic_write_text(out / f"{stem}.html", self.to_html(out)),
        }


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


# -- number formatting -----------------------------------------------------------------------------
def fmt(v: Any, digits: int = 4) -> str:
    """``v`` with ``digits`` significant digits; ``n/a`` for missing or non-finite values."""
    if not isinstance(v, (int, float)) or not math.isfinite(v):
        return "n/a"
    return f"{v:.{digits}g}"


def fmt_interval(mean: float, low: float, high: float) -> str:
    """``mean [low, high]``."""
    return f"{fmt(mean)} [{fmt(low)}, {fmt(high)}]"


def verdict(low: float, high: float) -> str:
    """Which way a 95% interval of a difference points, or that it cannot say."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return "no interval (one seed)"
    if low > 0:
        return "positive (the interval excludes 0)"
    if high < 0:
        return "negative (the interval excludes 0)"
    return "not distinguishable from 0 at 95%"


# -- the demo report -------------------------------------------------------------------------------
def findings(result: DemoResult) -> list[dict[str, Any]]:
    """Every paired comparison of lambda_max, trace and test accuracy, as numbers and a sentence."""
    out = []
    for p in result.paired:
        if p["metric"] not in (
            "lambda_max",
            "trace",
            "sharpness_average",
            "sharpness_worst",
            "test_accuracy",
        ):
            continue
        sentence = (
            f"{p['metric']}: {p['a']} - {p['b']} = {fmt_interval(p['mean'], p['ci95_low'], p['ci95_high'])} "
            f"(paired over seeds {p['seeds']}, n={p['n']}): {verdict(p['ci95_low'], p['ci95_high'])}"
        )
        out.append({**p, "sentence": sentence})
    return out


def _is_magnitude_vs_direction(f: dict[str, Any]) -> bool:
    return f["a"].startswith("SAM-magnitude") and f["b"].startswith("SAM-direction")


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


def _seed_study_table(result: DemoResult, metric: str) -> tuple[list[str], list[list[str]]]:
    """Rows: method (with decomposition); columns: rho; cells ``mean ± std`` (the seed study's layout)."""
    rhos = list(result.settings.rhos)
    rows: dict[str, dict[str, str]] = {}
    for g in result.groups:
        method = g["group"].split(" rho=")[0]
        cell = f"{fmt(g[f'{metric}_mean'])} ± {fmt(g[f'{metric}_std'], 2)}"
        rows.setdefault(method, {})
        if g["rho"] == "":
            for r in rhos:
                rows[method][f"{r:g}"] = cell
        else:
            rows[method][f"{g['rho']:g}"] = cell
    header = ["method", *[f"rho={r:g}" for r in rhos]]
    return header, [[m, *[cells.get(f"{r:g}", "") for r in rhos]] for m, cells in rows.items()]


def _draw_figures(result: DemoResult, fig_dir: Path) -> dict[str, Path]:
    from landscape.analysis import SharpnessResult
    from landscape.plot import plot_density, plot_surface_1d, plot_surfaces_2d
    from landscape.plot.demo_figures import plot_group_intervals, plot_paired_differences
    from landscape.surface import Surface

    figs: dict[str, Path] = {}
    figs["groups"] = save_figure(
        plot_group_intervals(result.groups, rows=result.rows), fig_dir / "groups.png"
    )
    figs["paired"] = save_figure(
        plot_paired_differences(result.paired, metric="lambda_max"), fig_dir / "paired_lambda_max.png"
    )
    fig = None
    for key, label in (("sgd", "SGD"), ("sam", f"SAM rho={result.settings.showcase_rho:g}")):
        res = SharpnessResult.load(result.showcase[key] / "sharpness.json")
        if res.density is not None:
            fig = plot_density(
                res.density,
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
    rep.bullets([f["sentence"] for f in found if f["b"] == "SGD" and f["metric"] != "trace"])
    rep.figure(rel["paired"], "lambda_max differences paired by seed, with 95% intervals")


def _interval_cells(group: dict[str, Any], metrics: Sequence[str]) -> list[str]:
    return [
        fmt_interval(group[f"{m}_mean"], group[f"{m}_ci95_low"], group[f"{m}_ci95_high"]) for m in metrics
    ]


def _add_groups(rep: Report, result: DemoResult, rel: dict[str, str]) -> None:
    """Per-group intervals of accuracy and curvature, the seed-study table and SAM's update statistics."""
    rep.heading("Groups")
    metrics = ("test_accuracy", "lambda_max", "trace", "sharpness_average", "sharpness_worst")
    header = ["group", "n", *(f"{m.replace('_', ' ')} mean [95% CI]" for m in metrics)]
    rep.table(header, [[g["group"], g["n"], *_interval_cells(g, metrics)] for g in result.groups])
    rep.paragraph("lambda_max as mean ± std over seeds, in the layout of the seed study:")
    rep.table(*_seed_study_table(result, "lambda_max"))
    rep.figure(rel["groups"], "group means with 95% t-intervals; dots are single seeds")
    rep.paragraph(
        "How SAM's update differs from SGD's on the same batch, averaged over the last 10% of the steps "
        "(mean [95% CI] over seeds): ||g_SAM|| / ||g_SGD||, cos(g_SAM, g_SGD), and the fraction of "
        "coordinates with |g_SAM_i| > |g_SGD_i|."
    )
    stats = ("grad_norm_ratio_late", "cosine_late", "frac_larger_late")
    rep.table(
        ["group", "norm ratio", "cosine", "fraction larger"],
        [[g["group"], *_interval_cells(g, stats)] for g in result.groups if g["optimizer"] != "sgd"],
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
        abs(r["trace_stderr"] / r["trace"]) for r in rows if r["trace"] and math.isfinite(r["trace_stderr"])
    ]
    return float(sorted(rel)[len(rel) // 2]) if rel else float("nan")
