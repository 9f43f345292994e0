"""Sharpness tracking: warm-started values against cold Lanczos and a dense float64 Hessian, thresholds
against the optimizers' own divergence, resume, CSV, figure and the plot-sharpness command."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from landscape.cli.main import LandscapeGroup
from landscape.cli.plot_sharpness import plot_sharpness
from landscape.errors import ConfigError, ResultFileError
from landscape.hessian.precond import preconditioned_sharpness
from landscape.objective.core import Objective
from landscape.objective.losses import resolve_loss
from landscape.plot.sharpness_track import plot_sharpness_track
from landscape.training.full_batch import full_batch_objective, full_batch_step
from landscape.training.sharpness_tracking import (
    SharpnessTracker,
    read_history,
    stability_threshold,
    tracking_objective,
)

torch.set_num_threads(1)


def _problem(seed: int = 0) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    x = torch.randn(40, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (40,), generator=g)
    return model, x, y


def _dense_hessian(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    sizes = [p.numel() for p in model.parameters()]
    loss_fn = resolve_loss("mse")

    def loss(w: torch.Tensor) -> torch.Tensor:
        parts = [c.view(s) for c, s in zip(torch.split(w, sizes), shapes)]
        return loss_fn(torch.func.functional_call(model, dict(zip(names, parts)), (x,)), y)

    w0 = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    return torch.autograd.functional.hessian(loss, w0)


def _gd_run(steps: int, every: int, lr: float = 0.5, **tracker_kwargs):
    model, x, y = _problem()
    loss_fn = resolve_loss("mse")
    train_obj = full_batch_objective(model, (x, y), loss_fn=loss_fn, batch_size=16)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    tracker = SharpnessTracker(
        tracking_objective(model, (x, y), loss_fn=loss_fn, num_samples=32, seed=5, batch_size=10),
        every=every,
        **tracker_kwargs,
    )
    return model, x, y, train_obj, opt, tracker


def test_warm_tracking_equals_cold_lanczos_and_dense_hessian() -> None:
    model, x, y, train_obj, opt, warm = _gd_run(12, 3, k=2, overlap=True)
    cold = SharpnessTracker(warm.objective, every=3, k=2, warm_start=False)
    sample = torch.sort(torch.randperm(40, generator=torch.Generator().manual_seed(5))[:32]).values
    for step in range(13):
        if warm.due(step, last=step == 12):
            a = warm.measure(step, 1, opt)
            b = cold.measure(step, 1, opt)
            H = _dense_hessian(model, x[sample], y[sample])
            evals, evecs = torch.linalg.eigh(H)
            for col, i in (("lambda_max", -1), ("lambda_2", -2)):
                # a Ritz value with residual r <= tol * |theta| is within r^2 / gap of the eigenvalue
                exact = float(evals[i])
                gap = float(
                    torch.cat([evals[:i], evals[i + 1 :] if i != -1 else evals[:0]]).sub(exact).abs().min()
                )
                bound = (warm.tol * abs(exact)) ** 2 / gap
                assert abs(a[col] - exact) <= bound, (step, col, a[col] - exact, bound)
                assert abs(b[col] - exact) <= bound, (step, col, b[col] - exact, bound)
                assert bound < 1e-4 * abs(exact)  # the check is tight
            # gradient fraction in the top-2 eigenspace, from the dense eigenvectors; Ritz vectors are
            # accurate to ~ tol * lambda / gap (first order, where eigenvalues are second order)
            model.zero_grad()
            resolve_loss("mse")(model(x[sample]), y[sample]).backward()
            g = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
            proj = evecs[:, -2:].T @ g
            assert a["grad_overlap"] == pytest.approx(float(proj @ proj / (g @ g)), abs=2e-3)
            assert a["converged"] == 1 and a["threshold"] == 2 / 0.5
        if step < 12:
            full_batch_step(opt, train_obj)
    assert [r["step"] for r in warm.rows] == [0, 3, 6, 9, 12]
    assert sum(r["hvps"] for r in warm.rows[1:]) < sum(r["hvps"] for r in cold.rows[1:])


class _Quadratic(nn.Module):
    """``L(w) = 1/2 w^T A w`` through a loss function: the Hessian is whatever ``A`` holds."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(n, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w.expand(len(x), -1)


@pytest.mark.parametrize("explore,found", [(0.1, True), (0.0, False)], ids=["default-explore", "no-explore"])
def test_warm_start_finds_a_new_top_direction_orthogonal_to_the_old(explore: float, found: bool) -> None:
    diag = torch.cat([torch.tensor([5.0, 4.0]), torch.linspace(0.0, 2.0, 38)]).double()
    A = torch.diag(diag)
    obj = Objective(
        _Quadratic(40), (torch.zeros(1, 1), torch.zeros(1)), loss_fn=lambda out, _: 0.5 * out[0] @ A @ out[0]
    )
    tracker = SharpnessTracker(obj, every=1, explore=explore)
    assert tracker.measure(0, 0, lr=0.1)["lambda_max"] == pytest.approx(5.0, rel=1e-5)  # default tol
    A[1, 1] = 6.0  # e_2 overtakes e_1; the previous eigenvector e_1 has no component along it
    lam = tracker.measure(1, 0, lr=0.1)["lambda_max"]
    # without the random part Lanczos starts in an invariant subspace and certifies the old pair
    assert (lam == pytest.approx(6.0, rel=1e-5)) == found
    assert found or lam == pytest.approx(5.0, rel=1e-5)


SGD_KINDS = {
    "gd": {},
    "heavy-ball": {"momentum": 0.9},
    "dampening": {"momentum": 0.5, "dampening": 0.3},
    "nesterov": {"momentum": 0.9, "nesterov": True},
}


@pytest.mark.parametrize("kind", list(SGD_KINDS), ids=list(SGD_KINDS))
@pytest.mark.parametrize("ratio,stable", [(0.97, True), (1.03, False)], ids=["below", "above"])
def test_threshold_column_is_where_torch_sgd_diverges(kind: str, ratio: float, stable: bool) -> None:
    lr = 0.1
    kwargs = SGD_KINDS[kind]
    model, x, y, _, _, tracker = _gd_run(0, 1)
    opt = torch.optim.SGD(model.parameters(), lr=lr, **kwargs)
    row = tracker.measure(0, 0, opt)
    thr = stability_threshold(lr, **kwargs)
    assert row["threshold"] == thr
    if kind == "gd":
        assert thr == 2 / lr
    # torch's own SGD on f(w) = a w^2 / 2 with a = ratio * threshold
    w = torch.ones(1, dtype=torch.float64, requires_grad=True)
    sgd = torch.optim.SGD([w], lr=lr, **kwargs)
    for _ in range(800):
        sgd.zero_grad()
        (0.5 * ratio * thr * w.pow(2)).sum().backward()
        sgd.step()
    assert (abs(float(w.detach())) < 1e-3) == stable


def test_adam_rows_have_the_preconditioned_sharpness_and_its_threshold() -> None:
    model, x, y = _problem()
    loss_fn = resolve_loss("mse")
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    before_first_step = SharpnessTracker(tracking_objective(model, (x, y), loss_fn=loss_fn), every=1)
    row0 = before_first_step.measure(0, 0, opt)
    assert "precond_lambda_max" not in row0 and "precond_threshold" in before_first_step.columns()
    for _ in range(3):
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
    tracker = SharpnessTracker(tracking_objective(model, (x, y), loss_fn=loss_fn), every=1)
    row = tracker.measure(3, 1, opt)
    assert math.isnan(row["threshold"])
    assert row["precond_threshold"] == pytest.approx(38 / 0.01, rel=1e-14)
    ref = preconditioned_sharpness(Objective(model, (x, y), loss_fn=loss_fn), opt, tol=1e-10)
    assert row["precond_lambda_max"] == pytest.approx(ref.lambda_max, rel=1e-6)
    assert tracker.columns()[-3:] == ["precond_lambda_max", "precond_threshold", "precond_hvps"]
    text = tracker.csv_text()
    assert text.splitlines()[1].split(",")[tracker.columns().index("threshold")] == ""


def _rows_without_time(tracker: SharpnessTracker) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in tracker.rows]


def test_resume_continues_the_same_series(tmp_path: Path) -> None:
    model, x, y, train_obj, opt, full = _gd_run(8, 2, k=2)
    for step in range(9):
        full.maybe_measure(step, 0, opt, last=step == 8)
        if step < 8:
            full_batch_step(opt, train_obj)

    model, x, y, train_obj, opt, first = _gd_run(8, 2, k=2)
    for step in range(5):
        first.maybe_measure(step, 0, opt)
        if step < 8:
            full_batch_step(opt, train_obj)
    path = tmp_path / "state.pt"
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "tracker": first.state_dict()}, path)

    state = torch.load(path, weights_only=True)
    model, x, y, train_obj, opt, second = _gd_run(8, 2, k=2)
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["opt"])
    second.load_state_dict(state["tracker"])
    for step in range(5, 9):
        second.maybe_measure(step, 0, opt, last=step == 8)
        if step < 8:
            full_batch_step(opt, train_obj)
    assert _rows_without_time(second) == _rows_without_time(full)

    other = SharpnessTracker(second.objective, every=3, k=2)
    with pytest.raises(ResultFileError, match=r"other settings \(every: 2 -> 3\)"):
        other.load_state_dict(state["tracker"])
    with pytest.raises(ResultFileError, match=r"damaged"):
        other.load_state_dict({"rows": []})


def test_measure_changes_nothing_and_restores_training_flags() -> None:
    model, x, y, _, opt, tracker = _gd_run(0, 1, overlap=True)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    tracker.measure(0, 0, opt)
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_due_measures_every_and_last_never_twice() -> None:
    *_, opt, tracker = _gd_run(0, 4)
    due = [s for s in range(11) if tracker.due(s, last=s == 10) and tracker.measure(s, 0, opt)]
    assert due == [0, 4, 8, 10]
    assert not tracker.due(10, last=True)


def test_csv_round_trip_and_figure(tmp_path: Path) -> None:
    model, x, y, train_obj, opt, tracker = _gd_run(6, 2, k=2)
    losses = []
    for step in range(7):
        tracker.maybe_measure(step, 0, opt, last=step == 6)
        if step < 6:
            losses.append(full_batch_step(opt, train_obj))
    run = tmp_path / "run"
    tracker.write_csv(run / "sharpness.csv")
    (run / "steps.csv").write_text(
        "epoch,step,loss,lr\n" + "".join(f"{s + 1},{s + 1},{v!r},0.5\n" for s, v in enumerate(losses))
    )
    hist = read_history(run)
    assert hist.label == "run"
    assert np.array_equal(hist.step, [0, 2, 4, 6])
    assert np.array_equal(hist.lambda_max, [r["lambda_max"] for r in tracker.rows])
    assert np.array_equal(hist.eigenvalues[:, 1], [r["lambda_2"] for r in tracker.rows])
    assert np.array_equal(hist.threshold, [4.0] * 4) and np.array_equal(hist.loss, losses)

    fig = plot_sharpness_track([hist, hist])
    top, bottom = fig.axes
    assert top.get_ylabel() == "sharpness" and bottom.get_ylabel() == "training loss"
    assert [ln.get_label() for ln in top.get_lines()][:2] == [
        "run: $\\lambda_{\\max}(H)$",
        "run: stability threshold",
    ]
    assert np.array_equal(top.get_lines()[1].get_ydata(), [4.0] * 4)
    with pytest.raises(ConfigError, match="axes has 1 axes; these runs need 2"):
        plot_sharpness_track(hist, axes=[top])
    adam = dataclasses.replace(
        hist, precond_lambda_max=hist.lambda_max * 9, precond_threshold=hist.threshold * 19
    )
    panels = plot_sharpness_track(adam).axes
    assert [ax.get_ylabel() for ax in panels] == ["sharpness", "preconditioned\nsharpness", "training loss"]
    assert np.array_equal(panels[1].get_lines()[1].get_ydata(), [76.0] * 4)


def test_plot_sharpness_command(tmp_path: Path) -> None:
    model, x, y, train_obj, opt, tracker = _gd_run(2, 1)
    for step in range(3):
        tracker.maybe_measure(step, 0, opt)
        if step < 2:
            full_batch_step(opt, train_obj)
    run = tmp_path / "gd"
    tracker.write_csv(run / "sharpness.csv")
    group = LandscapeGroup("landscape")
    group.add_command(plot_sharpness)
    runner = CliRunner()
    res = runner.invoke(
        group,
        ["plot-sharpness", str(run), str(run), "--label", "a", "--label", "b", "-o", str(tmp_path / "f.pdf")],
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "f.pdf").stat().st_size > 1000
    res = runner.invoke(group, ["plot-sharpness", str(run)])
    assert res.exit_code == 0 and (run / "sharpness.png").is_file()
    res = runner.invoke(group, ["plot-sharpness", str(tmp_path / "nope")])
    assert res.exit_code == 1
    assert res.output.strip().splitlines() == [
        f"error: {str(tmp_path / 'nope')!r} is not a run folder (no such directory)"
    ]
    res = runner.invoke(group, ["plot-sharpness", str(tmp_path)])
    assert res.exit_code == 1 and "has no sharpness.csv" in res.output
    res = runner.invoke(group, ["plot-sharpness", str(run), "-o", str(tmp_path / "f.jpg")])
    assert res.exit_code == 1 and "must end in one of .png, .pdf, .svg" in res.output


def test_bad_settings_are_refused() -> None:
    model, x, y = _problem()
    train_mode = Objective(model, (x, y), bn_mode="train")
    with pytest.raises(ConfigError, match=r"objective.bn_mode='train'"):
        SharpnessTracker(train_mode, every=1)
    obj = Objective(model, (x, y))
    with pytest.raises(ConfigError, match=r"every=0 must be an integer >= 1"):
        SharpnessTracker(obj, every=0)
    with pytest.raises(ConfigError, match=r"k=1000 must be an integer between 1 and 51"):
        SharpnessTracker(obj, every=1, k=1000)
    with pytest.raises(ConfigError, match=r"needs the optimizer or lr"):
        SharpnessTracker(obj, every=1).measure(0, 0)
