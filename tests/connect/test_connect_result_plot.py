"""The result round-trips through JSON and the figure is drawn from it alone."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

from landscape.connect import ConnectResult, PathResult
from landscape.errors import ConfigError, ResultFileError
from landscape.plot.connect import plot_connect


def _result() -> ConnectResult:
    alphas = np.linspace(0, 1, 5)
    linear = PathResult(
        "linear", alphas, [1.0, 2.0, 3.0, 2.0, 1.5], [0.9, 0.5, 0.2, 0.6, 0.8], bn="none", passes=5
    )
    curve = PathResult("bezier", alphas, [1.0, 1.1, 1.2, 1.3, 1.5], [0.9, 0.9, 0.8, 0.8, 0.8], bn="none")
    return ConnectResult(
        paths={"linear": linear, "bezier": curve}, metadata={"a": "runs/a.pt", "b": "b.pt", "bn": "none"}
    )


def test_json_round_trip_and_barriers(tmp_path):
    result = _result()
    d = result.to_dict()
    # loss: chord 1 -> 1.5 is 1.25 at alpha 0.5 and the path is 3: barrier 1.75 there
    assert d["linear"]["barrier_loss"] == pytest.approx(1.75) and d["linear"]["barrier_loss_at"] == 0.5
    # error: 0.1 -> 0.2 chord is 0.15 at 0.5, error 0.8: barrier 0.65
    assert d["linear"]["barrier_error"] == pytest.approx(0.65) and d["linear"]["barrier_error_at"] == 0.5
    assert "alphas" in d["linear"] and "t" in d["bezier"]
    path = result.to_json(tmp_path / "connect.json")
    loaded = ConnectResult.from_json(path)
    assert loaded.to_dict() == d
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ResultFileError, match="cannot read"):
        ConnectResult.from_json(tmp_path / "bad.json")


def test_nan_accuracy_is_written_as_null(tmp_path):
    path = PathResult("linear", [0.0, 1.0], [1.0, 2.0], [np.nan, np.nan], bn="none")
    d = ConnectResult({"linear": path}).to_dict()
    assert d["linear"]["accuracy"] == [None, None] and d["linear"]["barrier_error"] is None
    back = ConnectResult.from_dict(d)
    assert np.isnan(back.paths["linear"].accuracy).all()


def test_plot_returns_a_figure_with_and_without_ax():
    result = _result()
    fig = plot_connect(result)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert "barrier 1.75" in fig.axes[0].get_legend().get_texts()[0].get_text()
    other = Figure()
    ax = other.subplots()
    assert plot_connect(result, ax, metric="error") is other
    assert ax.get_ylabel().endswith("error (1 - accuracy)")
    with pytest.raises(ConfigError, match="metric='accuracy'"):
        plot_connect(result, metric="accuracy")
