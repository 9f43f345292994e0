"""Reduced-precision surfaces: autocast forward, float32 losses, a recorded float32 check, resume
refuses a precision mismatch, the float32 path is the one-point ``Objective.evaluate`` as before."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from landscape import Objective, build_model, digits_tensors
from landscape.errors import ConfigError
from landscape.plot.surface import plot_surface_1d, plot_surface_2d
from landscape.surface import (
    PointEvaluator,
    Surface,
    SurfaceMismatchError,
    compute_surface,
    random_directions,
)
from landscape.surface import precision as precision_module
from landscape.surface.precision import check_points

# bfloat16 keeps 8 significand bits (relative rounding 2^-8 ~ 3.9e-3 per operation); over a mean of
# many examples the errors largely cancel: measured <= 2e-4 relative on these models. The bound
# leaves room for other CPUs' kernels and still fails a surface that is not the same function.
BF16_RTOL = 1e-2
# accuracy may flip a few near-tied predictions out of 256 (measured <= 2)
ACCURACY_ATOL = 8 / 256


def _objective(name: str, *, dtype: torch.dtype = torch.float32, samples: int = 256) -> Objective:
    torch.manual_seed(0)
    model = build_model(name, **{"mlp": {"hidden": [32]}, "cnn": {"width": 4}}[name])
    with torch.no_grad():  # non-trivial running statistics
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    x, y = digits_tensors("train")
    return Objective(model, (x[:samples], y[:samples]), batch_size=100, dtype=dtype)  # 100, 100, 56


def _by_hand(obj: Objective, dtype: torch.dtype) -> float:
    """Mean loss of the model as it stands, forward under autocast, written out independently."""
    total = 0.0
    obj.model.eval()
    with torch.no_grad():
        for x, y, w in obj.batches():
            with torch.autocast("cpu", dtype=dtype):
                out = obj.model(x)
            assert out.dtype == dtype  # autocast really lowered the last layer
            total += w * float(F.cross_entropy(out.float(), y, reduction="mean").double())
    return total


@pytest.mark.parametrize(
    ("name", "mode", "precision"),
    [
        ("mlp", "weights", "bfloat16"),
        ("cnn", "weights", "bfloat16"),
        ("cnn", "states", "bfloat16"),
        ("mlp", "weights", "float16"),
    ],
    ids=["mlp-bf16", "cnn-bn-eval-bf16", "cnn-bn-states-bf16", "mlp-f16-cpu"],
)
def test_reduced_surface_is_close_to_float32_and_not_equal(name, mode, precision):
    obj = _objective(name)
    before = {k: v.clone() for k, v in obj.model.state_dict().items()}
    dirs = random_directions(obj, 2, seed=1, mode=mode)
    xs, ys = np.linspace(-1, 1, 5), np.linspace(-0.5, 1, 4)
    full = compute_surface(obj, dirs, xs, ys, points_per_pass=1, quiet=True)
    low = compute_surface(obj, dirs, xs, ys, points_per_pass=1, precision=precision, quiet=True)
    assert np.ptp(full.loss) > 0.01  # the points differ
    np.testing.assert_allclose(low.loss, full.loss, rtol=BF16_RTOL, atol=0)
    assert np.abs(low.loss - full.loss).max() > 0  # autocast was on: some rounding shows
    np.testing.assert_allclose(low.accuracy, full.accuracy, rtol=0, atol=ACCURACY_ATOL)
    assert low.metadata["precision"] == precision and full.metadata["precision"] == "float32"
    for k, v in obj.model.state_dict().items():
        assert torch.equal(v, before[k]), f"{k} changed"
        assert v.dtype == before[k].dtype


def test_one_point_matches_an_independent_autocast_loop():
    obj = _objective("cnn")
    dirs = random_directions(obj, 2, seed=2, mode="states")
    ev = PointEvaluator(obj, dirs, precision="bfloat16")
    with ev:
        loss, _ = ev.evaluate((0.3, -0.7))
        ev.set_point((0.3, -0.7))
        assert loss == pytest.approx(_by_hand(obj, torch.bfloat16), rel=1e-12, abs=0)


def test_check_metadata_equals_a_direct_recomputation():
    obj = _objective("cnn")
    dirs = random_directions(obj, 2, seed=3, mode="states")
    xs, ys = np.linspace(-1, 1, 10), np.linspace(-1, 0.8, 10)  # 100 points: 5 checked
    s = compute_surface(obj, dirs, xs, ys, points_per_pass=1, precision="bfloat16", quiet=True)
    check = s.metadata["precision_check"]
    expected = [(xs[4], ys[5]), (xs[0], ys[0]), (xs[0], ys[9]), (xs[9], ys[0]), (xs[9], ys[9])]
    np.testing.assert_array_equal(check["points"], expected)  # nearest the origin, then corners
    ev = PointEvaluator(obj, dirs)
    with ev:
        direct = []
        for a, b in expected:
            ev.set_point((a, b))
            direct.append((obj.evaluate().loss, _by_hand(obj, torch.bfloat16)))
    direct_f32 = np.array([d[0] for d in direct])
    direct_low = np.array([d[1] for d in direct])
    np.testing.assert_allclose(check["loss_float32"], direct_f32, rtol=1e-12)
    np.testing.assert_allclose(check["loss"], direct_low, rtol=1e-12)
    i, j = np.searchsorted(xs, [p[0] for p in expected]), np.searchsorted(ys, [p[1] for p in expected])
    np.testing.assert_array_equal(check["loss"], s.loss[i, j])
    diff = np.abs(direct_low - direct_f32)
    assert check["max_abs_diff"] == pytest.approx(diff.max(), rel=1e-9)
    assert check["max_rel_diff"] == pytest.approx((diff / np.abs(direct_f32)).max(), rel=1e-9)
    assert 0 <= check["max_accuracy_diff"] <= ACCURACY_ATOL
    assert s.to_dict()["precision_check"] == check


@pytest.mark.parametrize(
    ("xs", "ys", "expected"),
    [
        (np.linspace(-1, 1, 61), None, [30, 0, 60]),
        (np.linspace(-1, 1, 21), None, [10]),
        (np.linspace(-1, 1, 11), np.linspace(-1, 1, 11), [60, 0, 10, 110, 120]),
        (np.linspace(-1, 1, 3), np.linspace(-1, 1, 3), [4]),
        (np.array([0.5]), None, [0]),
        # no zero on either axis: the nearest point, x[19] = -0.0013 and y[5] = 0.067
        (np.linspace(-1, 1.05, 40), np.linspace(-1.1, 1, 10), [195, 0, 9, 390, 399]),
    ],
    ids=["1d-61", "1d-21-only-centre", "2d-11x11", "2d-3x3-only-centre", "1d-single", "2d-no-origin"],
)
def test_check_points_are_centre_then_corners_at_most_five_percent(xs, ys, expected):
    points = check_points(xs, ys)
    assert points == expected
    assert 1 <= len(points) <= max(1, 0.05 * len(xs) * (1 if ys is None else len(ys)))


def test_float32_default_is_objective_evaluate_bit_for_bit():
    obj = _objective("cnn")
    dirs = random_directions(obj, 2, seed=4, mode="states")
    xs, ys = np.linspace(-1, 1, 3), np.linspace(-1, 1, 2)
    default = compute_surface(obj, dirs, xs, ys, points_per_pass=1, quiet=True)
    explicit = compute_surface(obj, dirs, xs, ys, points_per_pass=1, precision="float32", quiet=True)
    ev = PointEvaluator(obj, dirs)
    with ev:
        for k in range(default.done.size):
            ev.set_point(default.coordinates(k))
            e = obj.evaluate()
            assert default.loss.reshape(-1)[k] == e.loss and default.accuracy.reshape(-1)[k] == e.accuracy
    np.testing.assert_array_equal(explicit.loss, default.loss)
    assert explicit.fingerprint == default.fingerprint
    assert "precision" not in default.metadata["fingerprint_parts"]  # older float32 files resume
    assert "precision_check" not in default.metadata


def test_resume_refuses_another_precision(tmp_path):
    obj = _objective("mlp")
    dirs = random_directions(obj, 1, seed=5)
    xs = np.linspace(-1, 1, 41)  # 2 check points
    path = tmp_path / "s.npz"
    part = compute_surface(obj, dirs, xs, path=path, precision="bfloat16", max_points=10, quiet=True)
    assert part.num_done == 10
    assert part.metadata["precision_check"]["points"] == [[-1.0]]  # only the computed check point
    for other in ("float32", "float16"):
        with pytest.raises(SurfaceMismatchError, match="precision") as info:
            compute_surface(obj, dirs, xs, path=path, precision=other, quiet=True)
        assert info.value.differences == ["precision"]
    done = compute_surface(obj, dirs, xs, path=path, precision="bfloat16", quiet=True)
    assert done.complete
    stored = Surface.load(path)
    assert stored.metadata["precision_check"]["points"] == [[0.0], [-1.0]]
    np.testing.assert_array_equal(stored.loss, done.loss)
    f32 = compute_surface(obj, dirs, xs, path=tmp_path / "f.npz", quiet=True)
    with pytest.raises(SurfaceMismatchError, match="precision"):
        compute_surface(obj, dirs, xs, path=tmp_path / "f.npz", precision="bfloat16", quiet=True)
    assert f32.complete


def test_several_points_per_pass_agree_with_one_point_under_autocast():
    """The vmapped forward rounds at other places (a bfloat16 product plus a float32 bias instead
    of one bfloat16 addmm), so the two agree to bfloat16 rounding, not to float32's 1e-6."""
    obj = _objective("mlp")
    dirs = random_directions(obj, 2, seed=6)
    xs, ys = np.linspace(-1, 1, 4), np.linspace(-0.5, 1, 3)
    one = compute_surface(obj, dirs, xs, ys, points_per_pass=1, precision="bfloat16", quiet=True)
    many = compute_surface(obj, dirs, xs, ys, points_per_pass=5, precision="bfloat16", quiet=True)
    full = compute_surface(obj, dirs, xs, ys, points_per_pass=5, quiet=True)
    assert many.metadata["points_per_pass"] == 5
    np.testing.assert_allclose(many.loss, one.loss, rtol=BF16_RTOL, atol=0)
    np.testing.assert_allclose(many.accuracy, one.accuracy, rtol=0, atol=ACCURACY_ATOL)
    assert np.abs(many.loss - full.loss).max() > 0  # the batched pass is under autocast too
    assert many.fingerprint == one.fingerprint != full.fingerprint


def test_recalibration_runs_in_the_same_precision():
    obj = _objective("cnn")
    dirs = random_directions(obj, 2, seed=7)
    before = {k: v.clone() for k, v in obj.model.state_dict().items()}
    xs = ys = np.linspace(-0.5, 0.5, 3)
    full = compute_surface(obj, dirs, xs, ys, bn="recalibrate", quiet=True)
    low = compute_surface(obj, dirs, xs, ys, bn="recalibrate", precision="bfloat16", quiet=True)
    np.testing.assert_allclose(low.loss, full.loss, rtol=BF16_RTOL, atol=0)
    bn = obj.model.features[1]
    with PointEvaluator(obj, dirs, bn="recalibrate", precision="bfloat16") as ev:
        ev.set_point((0.5, 0.5))
        ev.recalibrate("float32")
        mean32 = bn.running_mean.clone()
        ev.recalibrate()  # the evaluator's bfloat16
        assert bn.running_mean.dtype == torch.float32
        assert not torch.equal(bn.running_mean, mean32)  # the activations were bfloat16
        torch.testing.assert_close(bn.running_mean, mean32, rtol=2e-2, atol=2e-2)
    for k, v in obj.model.state_dict().items():
        assert torch.equal(v, before[k]), f"{k} changed"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"precision": "fp8"}, "precision='fp8' is not valid; choose one of 'float32', 'bfloat16'"),
        ({"precision": "bfloat16", "dtype": torch.float64}, "needs a float32 model, not float64"),
    ],
    ids=["unknown", "float64-model"],
)
def test_bad_precision_is_refused(kwargs, match):
    obj = _objective("mlp", dtype=kwargs.pop("dtype", torch.float32), samples=16)
    dirs = random_directions(obj, 1, seed=0)
    with pytest.raises(ConfigError, match=match):
        compute_surface(obj, dirs, [0.0, 1.0], quiet=True, **kwargs)


def test_a_dtype_autocast_disables_is_refused(monkeypatch):
    """CPU autocast warns and runs float32 for a dtype it does not support: refused, not silent."""
    monkeypatch.setitem(precision_module.AUTOCAST_DTYPES, "float16", torch.float64)
    obj = _objective("mlp", samples=16)
    with pytest.raises(
        ConfigError, match="not supported by autocast on device 'cpu'; use precision='float32'"
    ):
        PointEvaluator(obj, random_directions(obj, 1, seed=0), precision="float16")


def test_figures_name_a_reduced_precision():
    obj = _objective("mlp", samples=64)
    d2 = random_directions(obj, 2, seed=8)
    xs = np.linspace(-1, 1, 3)
    low2 = compute_surface(obj, d2, xs, xs, precision="bfloat16", quiet=True)
    full2 = compute_surface(obj, d2, xs, xs, quiet=True)
    assert "bfloat16" in plot_surface_2d(low2, title="t").axes[0].get_title()
    assert plot_surface_2d(full2, title="t").axes[0].get_title() == "t"
    d1 = random_directions(obj, 1, seed=8)
    low1 = compute_surface(obj, d1, xs, precision="float16", quiet=True)
    full1 = compute_surface(obj, d1, xs, quiet=True)
    fig = plot_surface_1d([low1, full1], labels=None)
    assert "float16" in fig.axes[0].get_title()
    names = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any("[float16]" in n for n in names) and any("[" not in n for n in names)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_float16_surface_is_close_to_float32():
    torch.manual_seed(0)
    x, y = digits_tensors("train")
    model = build_model("cnn", width=4)
    obj = Objective(model, (x[:256], y[:256]), batch_size=100, device="cuda", dtype=torch.float32)
    dirs = random_directions(obj, 2, seed=1)
    xs = np.linspace(-1, 1, 5)
    full = compute_surface(obj, dirs, xs, xs, points_per_pass=1, quiet=True)
    for per_pass in (1, 5):
        low = compute_surface(obj, dirs, xs, xs, points_per_pass=per_pass, precision="float16", quiet=True)
        np.testing.assert_allclose(low.loss, full.loss, rtol=BF16_RTOL, atol=0)
        assert low.metadata["precision_check"]["max_rel_diff"] <= BF16_RTOL
        assert low.metadata["objective"]["device"].startswith("cuda")
