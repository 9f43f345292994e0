"""Several grid points per pass: equal to the one-point path, fingerprint-neutral, resumable."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from landscape import Objective, build_model, digits_tensors
from landscape.errors import ConfigError
from landscape.surface import PointEvaluator, Surface, compute_surface, random_directions
from landscape.surface.batched import AUTO_MAX_POINTS, BatchedPointEvaluator, choose_points_per_pass

XS, YS = np.linspace(-1, 1, 4), np.linspace(-0.5, 1, 3)


def _objective(name: str, dtype: torch.dtype, bn_buffers: bool = True) -> Objective:
    torch.manual_seed(0)
    model = build_model(name, **{"mlp": {"hidden": [8]}, "cnn": {"width": 4}}[name])
    if bn_buffers:
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.running_mean.uniform_(-0.5, 0.5)
                    m.running_var.uniform_(0.5, 2.0)
    x, y = digits_tensors("train")
    return Objective(model, (x[:48], y[:48]), batch_size=20, dtype=dtype)  # batches 20, 20, 8


@pytest.mark.parametrize(
    ("name", "dtype", "mode", "rtol"),
    [
        ("mlp", torch.float32, "weights", 1e-6),
        ("mlp", torch.float64, "weights", 1e-12),
        ("cnn", torch.float32, "states", 1e-6),
        ("cnn", torch.float64, "states", 1e-12),
        ("cnn", torch.float64, "weights", 1e-12),
    ],
    ids=["mlp-f32", "mlp-f64", "cnn-bn-states-f32", "cnn-bn-states-f64", "cnn-bn-weights-f64"],
)
def test_batched_surface_equals_one_point_path(name, dtype, mode, rtol):
    """Same grid, 5 points per pass (passes of 5, 5, 2) vs one point at a time; BN in eval mode,
    its running statistics vmapped with the weights in states mode, shared in weights mode."""
    obj = _objective(name, dtype)
    before = {k: v.clone() for k, v in obj.model.state_dict().items()}
    dirs = random_directions(obj, 2, seed=1, mode=mode)
    one = compute_surface(obj, dirs, XS, YS, points_per_pass=1, quiet=True)
    many = compute_surface(obj, dirs, XS, YS, points_per_pass=5, quiet=True)
    assert many.metadata["points_per_pass"] == 5 and one.metadata["points_per_pass"] == 1
    assert np.ptp(one.loss) > 0.05  # the points differ: a broadcast of one point would fail below
    np.testing.assert_allclose(many.loss, one.loss, rtol=rtol, atol=0)
    np.testing.assert_array_equal(many.accuracy, one.accuracy)
    for k, v in obj.model.state_dict().items():
        assert torch.equal(v, before[k]), f"{k} changed"


def test_batched_evaluator_matches_dense_float64_reference():
    """Each stacked point against a fresh float64 model loaded with ``w0 + a d1 + b d2`` by hand."""
    obj = _objective("cnn", torch.float64)
    dirs = random_directions(obj, 2, seed=3, mode="states")
    coords = [(0.3, -0.7), (-1.0, 0.25), (0.0, 0.0)]
    with PointEvaluator(obj, dirs) as ev:
        got = BatchedPointEvaluator(ev).evaluate(coords)
    x, y = digits_tensors("train")
    x, y = x[:48].double(), y[:48]
    for (a, b), (loss, acc) in zip(coords, got):
        ref = _objective("cnn", torch.float64).model.eval()
        state = ref.state_dict()
        for n, d1 in dirs[0].items():
            if "running_var" in n:  # geometric in states mode
                state[n] = state[n] * torch.exp(a * d1 + b * dirs[1][n])
            else:
                state[n] = state[n] + a * d1 + b * dirs[1][n]
        ref.load_state_dict(state)
        with torch.no_grad():
            out = ref(x)
        assert loss == pytest.approx(float(torch.nn.functional.cross_entropy(out, y)), rel=1e-12)
        assert acc == float((out.argmax(1) == y).double().mean())


def test_points_per_pass_is_not_in_the_fingerprint_and_resumes(tmp_path):
    """A file begun one point per pass is finished five per pass (and vice versa accepted)."""
    obj = _objective("mlp", torch.float64)
    dirs = random_directions(obj, 2, seed=0)
    path = tmp_path / "s.npz"
    first = compute_surface(obj, dirs, XS, YS, path=path, points_per_pass=1, max_points=5, quiet=True)
    assert first.num_done == 5
    seen: list[int] = []
    s = compute_surface(
        obj, dirs, XS, YS, path=path, points_per_pass=5, callback=lambda k, *_: seen.append(k), quiet=True
    )
    assert s.complete and sorted(seen) == list(range(5, 12))
    full = compute_surface(obj, dirs, XS, YS, points_per_pass=1, quiet=True)
    assert s.fingerprint == full.fingerprint
    np.testing.assert_allclose(s.loss, full.loss, rtol=1e-12, atol=0)


def test_interruption_saves_every_finished_pass(tmp_path):
    """Ctrl-C in the third pass: the two finished passes (2 x 4 points) are on disk."""
    obj = _objective("mlp", torch.float64)
    dirs = random_directions(obj, 2, seed=0)
    path = tmp_path / "s.npz"
    seen: list[int] = []

    def interrupt(k: int, loss: float, acc: float) -> None:
        seen.append(k)
        if len(seen) == 9:  # first point of the third pass is recorded, then Ctrl-C
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        compute_surface(
            obj, dirs, XS, YS, path=path, points_per_pass=4, save_every=1e9, callback=interrupt, quiet=True
        )
    saved = Surface.load(path)
    assert saved.num_done == 9
    assert saved.metadata["points_per_pass"] == 4


def test_recalibration_falls_back_to_one_point_with_a_reason():
    obj = _objective("cnn", torch.float64)
    dirs = random_directions(obj, 2, seed=0)
    with PointEvaluator(obj, dirs, bn="recalibrate") as ev:
        points, reason = choose_points_per_pass(ev, 8)
    assert points == 1 and "recalibrate" in reason
    s = compute_surface(obj, dirs, XS[:2], YS[:2], bn="recalibrate", points_per_pass="auto", quiet=True)
    assert s.metadata["points_per_pass"] == 1 and "recalibrate" in s.metadata["points_per_pass_reason"]
    with PointEvaluator(obj, dirs, bn="recalibrate") as ev, pytest.raises(ConfigError, match="bn='fixed'"):
        BatchedPointEvaluator(ev)


def test_auto_stacks_small_models_within_the_budget():
    obj = _objective("mlp", torch.float32)
    with PointEvaluator(obj, random_directions(obj, 2, seed=0)) as ev:
        big, _ = choose_points_per_pass(ev, "auto")
        per_point = sum(t.numel() * t.element_size() for t in ev.live.values())
        small, reason = choose_points_per_pass(ev, "auto", memory_budget=3 * per_point)
    assert big == AUTO_MAX_POINTS  # a 600-parameter MLP: the cap, not the budget
    assert 1 <= small <= 2 and "budget" in reason  # weights + activations of 3 points do not fit


def test_auto_keeps_one_point_where_stacking_is_slower():
    cnn = _objective("cnn", torch.float32)
    with PointEvaluator(cnn, random_directions(cnn, 2, seed=0)) as ev:
        points, reason = choose_points_per_pass(ev, "auto")
        assert points == 1 and "convolutions" in reason
        assert choose_points_per_pass(ev, 4) == (4, "requested")  # asked for: still stacked
    torch.manual_seed(0)
    wide = build_model("mlp", hidden=[256])  # 64 * 256 float32 weights = 64 KiB + biases: above the cap
    x, y = digits_tensors("train")
    obj = Objective(wide, (x[:8], y[:8]))
    with PointEvaluator(obj, random_directions(obj, 1, seed=0)) as ev:
        points, reason = choose_points_per_pass(ev, "auto")
    assert points == 1 and "no gain" in reason


@pytest.mark.parametrize("bad", [0, -3, "many", 2.5, True], ids=["zero", "negative", "word", "float", "bool"])
def test_bad_points_per_pass_is_refused(bad):
    obj = _objective("mlp", torch.float64)
    with (
        PointEvaluator(obj, random_directions(obj, 1, seed=0)) as ev,
        pytest.raises(ConfigError, match="points_per_pass=.*'auto' or a positive integer"),
    ):
        choose_points_per_pass(ev, bad)


def _mlp_checkpoint(path):
    from landscape.data.datasets import DataSpec
    from landscape.models.builders import ModelSpec
    from landscape.models.checkpoints import save_checkpoint

    torch.manual_seed(0)
    save_checkpoint(
        path,
        build_model("mlp", hidden=[8]),
        model_spec=ModelSpec("mlp", {"hidden": [8]}),
        data_spec=DataSpec("digits"),
    )
    return path


def test_cli_points_per_pass_is_recorded_and_bad_values_get_one_line(tmp_path):
    from click.testing import CliRunner

    from landscape.cli.main import cli

    ckpt = _mlp_checkpoint(tmp_path / "m.pt")
    common = [
        "plot1d",
        str(ckpt),
        "--x",
        "-1:1:5",
        "--samples",
        "32",
        "--device",
        "cpu",
        "-q",
        "-o",
        str(tmp_path),
    ]
    ok = CliRunner().invoke(cli, [*common, "--points-per-pass", "3"], catch_exceptions=False)
    assert ok.exit_code == 0, ok.output
    saved = Surface.load(tmp_path / "m_random_1d.npz")
    assert saved.complete and saved.metadata["points_per_pass"] == 3
    one = CliRunner().invoke(
        cli, [*common, "--points-per-pass", "1", "--name", "one"], catch_exceptions=False
    )
    assert one.exit_code == 0, one.output
    np.testing.assert_allclose(Surface.load(tmp_path / "one.npz").loss, saved.loss, rtol=1e-6, atol=0)
    bad = CliRunner().invoke(cli, [*common, "--points-per-pass", "zero"], catch_exceptions=False)
    assert bad.exit_code != 0
    assert "--points-per-pass 'zero' is not valid; use auto or a positive integer" in bad.output
    assert "Traceback" not in bad.output
