"""The generic report: Markdown and a self-contained HTML page of headings, text, tables and figures."""

from __future__ import annotations

import math

from landscape.report import Report, fmt, fmt_interval, verdict


def test_report_markdown_and_self_contained_html(tmp_path):
    from matplotlib.figure import Figure

    from landscape.io.atomic import save_figure

    fig = Figure(figsize=(1, 1))
    fig.add_subplot().plot([0, 1], [1, 0])
    save_figure(fig, tmp_path / "figures" / "f.png")
    rep = Report("title <x>")
    rep.heading("Finding")
    rep.paragraph("a < b & c")
    rep.bullets(["one", "two"])
    rep.table(["name", "value"], [["a|b", fmt_interval(1.0, 0.5, 1.5)]])
    rep.figure("figures/f.png", "a figure")
    paths = rep.write(tmp_path)
    md = paths["report.md"].read_text()
    assert "| a\\|b | 1 [0.5, 1.5] |" in md
    assert "![a figure](figures/f.png)" in md and "## Finding" in md
    page = paths["report.html"].read_text()
    assert "a &lt; b &amp; c" in page and "<title>title &lt;x&gt;</title>" in page
    assert page.count('src="data:image/png;base64,') == 1
    assert "figures/f.png" not in page  # nothing links outside the file
    assert not list(tmp_path.glob(".*tmp*"))


def test_numbers_and_verdicts():
    assert fmt(0.123456) == "0.1235" and fmt(float("nan")) == "n/a" and fmt(None) == "n/a"
    assert verdict(0.1, 0.3).startswith("positive") and verdict(-0.3, -0.1).startswith("negative")
    assert verdict(-0.1, 0.1) == "not distinguishable from 0 at 95%"
    assert verdict(math.nan, math.nan) == "no interval (one seed)"
