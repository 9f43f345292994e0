"""Non-finite losses at grid points, interruption, non-finite weights, names and titles."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from landscape import Objective
from landscape.errors import CheckpointError
from landscape.plot.surface import default_title, plot_surface_1d, plot_surface_2d
from landscape.surface import (
    NonFiniteLossWarning,
    Surface,
    check_finite_tensors,
    compute_surface,
    default_surface_name,
    run_name,
)


class SqrtScaled(nn.Module):
    """``logits = sqrt(s) * (x @ W^T)``: NaN wherever the scalar ``s`` is moved below zero."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.weight = nn.Parameter(torch.randn(3, 4, dtype=torch.float64))
        self.scale = nn.Parameter(torch.ones(1, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(self.scale) * (x @ self.weight.T)


def _objective() -> Objective:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(24, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (24,), generator=g)
    return Objective(SqrtScaled(), (x, y), batch_size=8, dtype=torch.float64)


def _dirs(two: bool) -> list[dict[str, torch.Tensor]]:
    d1 = {"scale": torch.ones(1, dtype=torch.float64), "weight": torch.zeros(3, 4, dtype=torch.float64)}
    if not two:
        return [d1]
    d2 = {
        "scale": torch.zeros(1, dtype=torch.float64),
        "weight": torch.full((3, 4), 0.1, dtype=torch.float64),
    }
    return [d1, d2]


def test_nonfinite_points_are_kept_counted_and_not_scored(tmp_path):
    obj = _objective()
    path = tmp_path / "s.npz"
    xs = np.array([-2.0, -1.5, 0.0, 1.0])  # scale = 1 + x: NaN at the first two
    with pytest.warns(NonFiniteLossWarning, match="2 of 4 grid points have a non-finite loss"):
        s = compute_surface(obj, _dirs(False), xs, path=path, quiet=True)
    stored = Surface.load(path)
    for t in (s, stored):
        assert t.done.all() and t.num_nonfinite == 2
        assert np.isnan(t.loss[:2]).all() and np.isfinite(t.loss[2:]).all()
        assert np.isnan(t.accuracy[:2]).all() and np.isfinite(t.accuracy[2:]).all()
    d = stored.to_dict()
    assert d["points_nonfinite"] == 2 and d["points_done"] == 4
    assert d["loss_min"] == pytest.approx(float(np.min(s.loss[2:])), rel=0, abs=0)
    assert d["loss_max"] == float(np.max(s.loss[2:]))
    assert d["accuracy_max"] == float(np.max(s.accuracy[2:]))
    fig = plot_surface_1d(stored)
    (line,) = [ln for ln in fig.axes[0].get_lines() if ln.get_label().endswith("loss")]
    assert np.isnan(line.get_ydata()[:2]).all() and np.isfinite(line.get_ydata()[2:]).all()


def test_contours_are_drawn_over_the_finite_part():
    obj = _objective()
    xs, ys = np.linspace(-2.0, 1.0, 7), np.linspace(-1.0, 1.0, 5)  # x < -1: NaN
    with pytest.warns(NonFiniteLossWarning, match="10 of 35"):
        s = compute_surface(obj, _dirs(True), xs, ys, quiet=True)
    fig = plot_surface_2d(s, kind="contour", levels=8)
    contour = fig.axes[0].collections[0]
    segments = [seg for level in contour.allsegs for seg in level]
    assert segments, "no contour line was drawn"
    assert min(float(seg[:, 0].min()) for seg in segments if len(seg)) >= -1.0 - 1e-12
    for kind in ("filled", "heatmap", "surface3d"):
        plot_surface_2d(s, kind=kind, levels=8)


def test_finite_surface_gives_no_warning():
    obj = _objective()
    with warnings.catch_warnings():
        warnings.simplefilter("error", NonFiniteLossWarning)
        s = compute_surface(obj, _dirs(False), np.array([0.0, 1.0]), quiet=True)
    assert s.num_nonfinite == 0


def test_interrupt_saves_the_points_done_and_the_rerun_does_only_the_rest(tmp_path):
    obj = _objective()
    xs, path = np.linspace(-0.5, 1.0, 9), tmp_path / "s.npz"
    ref = compute_surface(obj, _dirs(False), xs, quiet=True)

    def interrupt_after_four(k: int, loss: float, acc: float) -> None:
        if k == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # save_every is long: only the interrupt can have saved
        compute_surface(
            obj, _dirs(False), xs, path=path, save_every=1e6, callback=interrupt_after_four, quiet=True
        )
    partial = Surface.load(path)
    assert partial.num_done == 4 and partial.done[:4].all()
    seen: list[int] = []
    done = compute_surface(
        obj, _dirs(False), xs, path=path, callback=lambda k, *_: seen.append(k), quiet=True
    )
    assert seen == list(range(4, 9)) and done.complete
    np.testing.assert_array_equal(done.loss, ref.loss)
    assert obj.params[1].item() == 1.0  # the model is back at its base point


def test_nonfinite_weights_are_named():
    good = {"a": torch.ones(3)}
    check_finite_tensors(good.items(), "ok.pt")
    bad = {"a": torch.ones(3), "b.weight": torch.tensor([1.0, float("nan"), float("inf"), 2.0])}
    with pytest.raises(
        CheckpointError, match=r"'x.pt' has non-finite values in 'b.weight' \(1 NaN, 1 inf of 4\)"
    ):
        check_finite_tensors(bad.items(), "x.pt")


def test_names_and_titles_come_from_the_run_folder(tmp_path):
    run = tmp_path / "runs" / "sgd"
    (run / "ckpts").mkdir(parents=True)
    (run / "config.json").write_text("{}")
    (run / "metrics.csv").write_text("epoch\n")
    assert run_name(run / "final.pt") == "sgd" and run_name(run / "ckpts" / "epoch_003.pt") == "sgd"
    assert run_name(tmp_path / "final.pt") is None
    assert default_surface_name(run / "final.pt", "random", 2) == "sgd_final_random_2d"
    assert default_surface_name(tmp_path / "final.pt", "random", 2) == "final_random_2d"
    s = Surface.empty(np.zeros(2), np.zeros(2))
    s.metadata.update(
        {"checkpoint": str(run / "final.pt"), "run": "sgd", "direction": {"kind": "random", "norm": "filter"}}
    )
    assert default_title(s) == "sgd (final.pt): random directions, filter-normalized"
    s.metadata.update({"run": None, "direction": {"kind": "interpolation", "to": "b/other.pt"}})
    s.ys = None
    assert default_title(s) == "final: interpolation to other.pt"
