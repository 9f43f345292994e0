"""Group figures draw the grouping's numbers: panels per metric, paired differences against zero."""

from __future__ import annotations

import pytest
from matplotlib.figure import Figure

from landscape.errors import ConfigError
from landscape.plot.groups import plot_group_metric, plot_group_panels, plot_paired_differences
from landscape.runs.grouping import RunRecord, pair_by_seed, summarize_groups


def _grouping():
    records = []
    for opt, values in (("sgd", (10.0, 12.0, 11.0)), ("sam", (7.0, 10.0, 7.0)), ("asam", (9.0, 12.0, 10.0))):
        for seed, v in enumerate(values):
            metrics = {"test_accuracy": 0.9 + 0.01 * seed, "lambda_max": v}
            records.append(RunRecord(f"{opt}{seed}", "", opt.upper(), seed, opt, None, None, metrics))
    grouping = summarize_groups(records, baseline=None)
    grouping.paired = pair_by_seed(records, [("SAM", "SGD"), ("ASAM", "SGD")], grouping.metrics)
    return grouping


def test_paired_differences_are_drawn_with_their_intervals_against_zero():
    g = _grouping()
    fig = plot_paired_differences(g, "lambda_max")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["SAM  -  SGD", "ASAM  -  SGD"]
    bars = sorted(tuple(seg[:, 0]) for c in ax.collections for seg in c.get_segments())
    expected = sorted((p.stats.ci95_low, p.stats.ci95_high) for p in g.paired if p.metric == "lambda_max")
    assert bars == [pytest.approx(e) for e in expected]
    sam = next(p for p in g.paired if p.metric == "lambda_max" and p.group == "SAM")
    assert sam.stats.ci95_high < 0  # excludes zero: drawn in red
    assert ax.lines[0].get_color() == "C3"
    into = Figure()
    assert plot_paired_differences(g, "test_accuracy", ax=into.add_subplot()) is into


def test_panels_one_per_metric():
    g = _grouping()
    fig = plot_group_panels(g, ("test_accuracy", "lambda_max"))
    assert len(fig.axes) == 2
    assert [t.get_text() for t in fig.axes[1].get_xticklabels()] == ["SGD", "SAM", "ASAM"]
    with pytest.raises(ConfigError, match="needs 2D axes"):  # figure_and_axes checks the caller's axes
        plot_group_metric(g, "lambda_max", ax=Figure().add_subplot(projection="3d"))
