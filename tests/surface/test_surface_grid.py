"""Grid evaluation: centre point, closed-form quadratic, interpolation endpoints, BN, resume, refusal."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from landscape import Objective
from landscape.errors import ConfigError, ResultFileError
from landscape.surface import (
    PointEvaluator,
    Surface,
    compute_surface,
    interpolation_direction,
    random_directions,
    snapshot,
)


def _state(obj: Objective) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in obj.model.state_dict().items()}


def _assert_same_state(obj: Objective, before: dict[str, torch.Tensor]) -> None:
    after = obj.model.state_dict()
    for k, v in before.items():
        assert torch.equal(after[k], v), f"{k} was not restored bit-exactly"


@pytest.mark.parametrize(
    ("model", "bn"),
    [("mlp", "fixed"), ("cnn", "fixed"), ("cnn", "recalibrate")],
    ids=["mlp", "cnn", "cnn-recal"],
)
def test_centre_equals_objective_and_base_is_restored(make_objective, model, bn):
    obj = make_objective(model)
    before = _state(obj)
    expected = obj.evaluate()
    dirs = random_directions(obj, 2, seed=1, mode="states")
    s = compute_surface(obj, dirs, np.linspace(-1, 1, 3), np.linspace(-0.5, 1, 4), bn=bn, quiet=True)
    _assert_same_state(obj, before)
    assert s.complete and s.shape == (3, 4)
    centre = s.loss[1, 1]  # (0, 0)
    assert s.coordinates(1 * 4 + 1) == (0.0, 0.0)
    if bn == "fixed":
        assert centre == expected.loss
        assert s.accuracy[1, 1] == expected.accuracy
    else:  # recalibrated statistics differ from the random buffers: the surface must see it
        assert abs(centre - expected.loss) > 1e-6
    assert np.isfinite(s.loss).all()


class Quadratic(nn.Module):
    """Every output row is ``q(W) = 0.5 (w - c)^T A (w - c)`` with ``w = vec(W)``."""

    def __init__(self, A: torch.Tensor, c: torch.Tensor, shape: tuple[int, int]) -> None:
        super().__init__()
        self.W = nn.Parameter(torch.randn(shape, dtype=torch.float64))
        self.register_buffer("A", A)
        self.register_buffer("c", c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.W.reshape(-1) - self.c
        return (0.5 * r @ self.A @ r).expand(x.shape[0], 1)


@pytest.mark.parametrize("norm", ["filter", "none"], ids=["filter", "none"])
def test_quadratic_surface_matches_closed_form(norm):
    torch.manual_seed(0)
    shape = (3, 4)
    n = 12
    M = torch.randn(n, n, dtype=torch.float64)
    A = M @ M.T + 0.1 * torch.eye(n, dtype=torch.float64)
    c = torch.randn(n, dtype=torch.float64)
    model = Quadratic(A, c, shape)
    x = torch.zeros(10, 1, dtype=torch.float64)
    y = torch.zeros(10, dtype=torch.float64)
    obj = Objective(model, (x, y), loss_fn=lambda out, _y: out.mean(), batch_size=4, dtype=torch.float64)
    d1, d2 = random_directions(obj, 2, seed=2, norm=norm)
    xs, ys = np.linspace(-2, 1, 7), np.linspace(-1, 1.5, 6)
    s = compute_surface(obj, [d1, d2], xs, ys, quiet=True)
    w0 = model.W.detach().reshape(-1).numpy()
    u, v = d1["W"].reshape(-1).numpy(), d2["W"].reshape(-1).numpy()
    An, cn = A.numpy(), c.numpy()
    a, b = np.meshgrid(xs, ys, indexing="ij")
    r = (w0 - cn)[None, None, :] + a[..., None] * u + b[..., None] * v
    expected = 0.5 * np.einsum("ijk,kl,ijl->ij", r, An, r)
    np.testing.assert_allclose(s.loss, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    ("model", "mode"), [("mlp", "weights"), ("cnn", "states")], ids=["mlp-weights", "cnn-states"]
)
def test_interpolation_endpoints_equal_each_checkpoint(make_objective, model, mode):
    obj1, obj2 = make_objective(model, seed=0), make_objective(model, seed=1)
    if model == "cnn":  # other running statistics in the second model
        with torch.no_grad():
            for m in obj2.model.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.running_var.mul_(1.5)
    d = interpolation_direction(snapshot(obj1, mode), snapshot(obj2, mode))
    s = compute_surface(obj1, [d], np.linspace(-0.5, 1.5, 5), quiet=True)
    assert s.xs[1] == 0.0 and s.xs[3] == 1.0
    assert s.loss[1] == obj1.evaluate().loss
    np.testing.assert_allclose(s.loss[3], obj2.evaluate().loss, rtol=1e-10)
    np.testing.assert_allclose(s.accuracy[3], obj2.evaluate().accuracy, rtol=0, atol=1e-12)


def test_recalibration_gives_the_data_mean(make_objective):
    obj = make_objective("cnn", batch_size=16)
    before = _state(obj)
    bn = obj.model.features[1]
    was_training = bn.training  # recalibration gives the layer its own mode back
    with PointEvaluator(obj, random_directions(obj, 1), bn="recalibrate") as ev:
        ev.set_point([0.0])
        ev.recalibrate()
        x = torch.cat([xb for xb, _, _ in obj.batches()])
        with torch.no_grad():
            feats = obj.model.features[0](x)
        torch.testing.assert_close(bn.running_mean, feats.mean(dim=(0, 2, 3)), rtol=1e-12, atol=1e-12)
        assert bn.training == was_training
    _assert_same_state(obj, before)


def test_recalibrate_needs_batch_norm(make_objective):
    obj = make_objective("mlp")
    with pytest.raises(ConfigError, match="batch-norm"):
        PointEvaluator(obj, random_directions(obj, 1), bn="recalibrate")


class _StopError(Exception):
    pass


@pytest.mark.parametrize("chunk_size", [1, 3], ids=["chunk1", "chunk3"])
def test_interrupted_run_resumes_to_the_identical_array(make_objective, tmp_path, chunk_size):
    obj = make_objective("cnn")
    before = _state(obj)
    dirs = random_directions(obj, 2, seed=0)
    xs, ys = np.linspace(-1, 1, 5), np.linspace(-1, 0.5, 4)
    full = compute_surface(obj, dirs, xs, ys, points_per_pass=1, quiet=True)
    path = tmp_path / "s.npz"
    seen: list[int] = []

    def stop_after_7(k: int, loss: float, acc: float) -> None:
        seen.append(k)
        if len(seen) == 7:
            raise _StopError

    with pytest.raises(_StopError):
        compute_surface(
            obj,
            dirs,
            xs,
            ys,
            path=path,
            chunk_size=chunk_size,
            points_per_pass=1,  # chunk_size is the save granularity of the one-point path
            save_every=0,
            callback=stop_after_7,
        )
    _assert_same_state(obj, before)
    partial = Surface.load(path)
    assert 0 < partial.num_done < 20
    assert partial.num_done == (6 // chunk_size) * chunk_size  # the 7th point raised before its save
    resumed_points: list[int] = []
    s = compute_surface(
        obj,
        dirs,
        xs,
        ys,
        path=path,
        chunk_size=chunk_size,
        points_per_pass=1,
        callback=lambda k, *_: resumed_points.append(k),
    )
    assert len(resumed_points) == 20 - partial.num_done
    assert np.array_equal(s.loss, full.loss) and np.array_equal(s.accuracy, full.accuracy)
    again = Surface.load(path)
    assert again.complete and np.array_equal(again.loss, full.loss)


def test_max_points_stops_and_resumes(make_objective, tmp_path):
    obj = make_objective("mlp")
    (d,) = random_directions(obj, 1, seed=0)
    path = tmp_path / "s.npz"
    s = compute_surface(obj, [d], np.linspace(-1, 1, 9), path=path, max_points=4)
    assert s.num_done == 4 and Surface.load(path).num_done == 4
    s = compute_surface(obj, [d], np.linspace(-1, 1, 9), path=path)
    assert s.complete


@pytest.mark.parametrize(
    ("change", "differs"),
    [("seed", "directions"), ("grid", "xs"), ("bn", "bn"), ("data", "data")],
    ids=["seed", "grid", "bn", "data"],
)
def test_mismatched_surface_file_is_refused(make_objective, tmp_path, change, differs):
    obj = make_objective("cnn")
    path = tmp_path / "s.npz"
    compute_surface(obj, random_directions(obj, 1, seed=0), np.linspace(-1, 1, 3), path=path)
    seed, grid, bn = 0, np.linspace(-1, 1, 3), "fixed"
    if change == "seed":
        seed = 1
    elif change == "grid":
        grid = np.linspace(-1, 1, 4)
    elif change == "bn":
        bn = "recalibrate"
    else:
        obj = Objective(obj.model, [(xb[:-1], yb[:-1]) for xb, yb, _ in obj.batches()], dtype=torch.float64)
    dirs = random_directions(obj, 1, seed=seed)
    with pytest.raises(ResultFileError, match=f"other settings.*{differs}.*overwrite=True"):
        compute_surface(obj, dirs, grid, path=path, bn=bn)
    s = compute_surface(obj, dirs, grid, path=path, bn=bn, overwrite=True)
    assert s.complete and Surface.load(path).fingerprint == s.fingerprint


def test_surface_roundtrip_and_bad_files(tmp_path):
    s = Surface.empty(np.linspace(-1, 1, 3), np.linspace(0, 1, 2), metadata={"a": 1}, fingerprint="f")
    s.loss[0, 1], s.done[0, 1] = 2.5, True
    s.extras["path_x"] = np.arange(3.0)
    s.save(tmp_path / "a.npz")
    t = Surface.load(tmp_path / "a.npz")
    assert np.array_equal(t.loss, s.loss, equal_nan=True) and t.metadata == {"a": 1}
    assert t.fingerprint == "f" and np.array_equal(t.extras["path_x"], np.arange(3.0))
    assert t.to_dict()["loss_min_at"] == [-1.0, 1.0]
    np.savez(tmp_path / "b.npz", x=np.zeros(2))
    with pytest.raises(ResultFileError, match="not a surface file"):
        Surface.load(tmp_path / "b.npz")
    with pytest.raises(ResultFileError, match="does not exist"):
        Surface.load(tmp_path / "c.npz")


def test_wrong_direction_count(make_objective):
    obj = make_objective("mlp")
    with pytest.raises(ConfigError, match="2D grid needs 2"):
        compute_surface(obj, random_directions(obj, 1), [0.0], [0.0])
