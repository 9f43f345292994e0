"""Linear paths, barriers and curves against direct evaluation and closed forms."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from connect_helpers import make_model, save
from torch import nn

from landscape.connect import (
    ConnectResult,
    barrier,
    connect_checkpoints,
    curve_coefficients,
    evaluate_path,
    linear_path,
    midpoint,
    train_curve,
)
from landscape.connect.paths import difference
from landscape.errors import ConfigError, ResultFileError
from landscape.objective.core import Objective
from landscape.surface.directions import bn_buffers


def test_barrier_closed_form():
    # chord from 1 to 3: at p = 0.25 it is 1.5, the path is 2.5 -> rise 1.0 (the largest)
    height, at = barrier([0.0, 0.25, 0.5, 1.0], [1.0, 2.5, 2.6, 3.0])
    assert height == pytest.approx(1.0, abs=1e-15) and at == 0.25
    # a path below its chord: the maximum rise is at an end, 0
    assert barrier([0.0, 0.5, 1.0], [1.0, 0.0, 1.0]) == (0.0, 0.0)
    with pytest.raises(ConfigError, match="from 0 to 1"):
        barrier([0.1, 1.0], [1.0, 2.0])
    with pytest.raises(ConfigError, match="length >= 2"):
        barrier([0.0], [1.0])


def _params(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _direct(model_a, model_b, alpha, data, *, states: bool, recal_data=None):
    """Evaluate a fresh model holding (1 - alpha) A + alpha B, built without the path code."""
    net = copy.deepcopy(model_a)
    sa, sb = model_a.state_dict(), model_b.state_dict()
    moved = set(_params(model_a)) | (set(bn_buffers(model_a)) if states else set())

    def mix(k: str, v: torch.Tensor) -> torch.Tensor:
        if k not in moved:
            return v
        if k.endswith("running_var"):  # geometric: v_A^(1 - alpha) v_B^alpha
            return (v.double() ** (1 - alpha) * sb[k].double() ** alpha).to(v.dtype)
        return (1 - alpha) * v + alpha * sb[k]

    net.load_state_dict({k: mix(k, v) for k, v in sa.items()})
    if recal_data is not None:
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.reset_running_stats()
                m.momentum = None
                m.train()
        with torch.no_grad():
            net(recal_data[0])  # one batch: the exact average is the full-batch statistic
        net.eval()
    with torch.no_grad():
        out = net(data[0])
    loss = float(nn.functional.cross_entropy(out, data[1]))
    acc = float((out.argmax(1) == data[1]).double().mean())
    return loss, acc


@pytest.mark.parametrize(
    ("kind", "bn"),
    [("mlp", "none"), ("cnn", "states"), ("cnn", "recalibrate")],
    ids=["mlp", "cnn-states", "cnn-recal"],
)
def test_linear_path_equals_direct_evaluation(kind, bn, digits_small):
    a, b = make_model(kind, 0), make_model(kind, 1)
    x, y = digits_small
    evaluation = (x[:48], y[:48])
    training = (x[48:], y[48:])
    objective = Objective(a, evaluation, device="cpu")
    w_a = {n: p.detach().clone() for n, p in zip(objective.param_names, objective.params)}
    w_b = _params(b)
    recal = None
    if bn == "states":
        w_a.update({k: v.clone() for k, v in bn_buffers(a).items()})
        w_b.update(bn_buffers(b))
    elif bn == "recalibrate":
        recal = Objective(a, training, device="cpu")
    before = copy.deepcopy(a.state_dict())
    alphas = np.linspace(0, 1, 5)
    path = linear_path(objective, w_a, w_b, alphas, recalibration=recal, bn=bn)
    for i, alpha in enumerate(alphas):
        loss, acc = _direct(
            make_model(kind, 0),
            b,
            alpha,
            evaluation,
            states=bn == "states",
            recal_data=training if recal else None,
        )
        assert path.loss[i] == pytest.approx(loss, rel=1e-12, abs=1e-12)
        assert path.accuracy[i] == pytest.approx(acc, abs=1e-12)
    for k, v in a.state_dict().items():  # evaluation never changes the model
        assert torch.equal(v, before[k]), k


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_bezier_through_the_midpoint_is_the_linear_path(kind, digits_small):
    a, b = make_model(kind, 0), make_model(kind, 1)
    objective = Objective(a, digits_small, device="cpu")
    recal = objective if kind == "cnn" else None
    w_a = {n: p.detach().clone() for n, p in zip(objective.param_names, objective.params)}
    w_b = _params(b)
    ts = np.linspace(0, 1, 7)
    linear = linear_path(objective, w_a, w_b, ts, recalibration=recal)
    theta = midpoint(w_a, w_b)
    coefficients = [curve_coefficients("bezier", t) for t in ts]
    curve = evaluate_path(
        objective,
        w_a,
        [difference(w_a, theta), difference(w_a, w_b)],
        coefficients,
        ts,
        kind="bezier",
        recalibration=recal,
    )
    np.testing.assert_allclose(curve.loss, linear.loss, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(curve.accuracy, linear.accuracy, atol=1e-12)


def test_curve_coefficients_closed_form():
    for t in np.linspace(0, 1, 11):
        c1, c2 = curve_coefficients("bezier", t)
        # (1-t)^2 + 2t(1-t) + t^2 = 1: phi = (1-t)^2 w_A + 2t(1-t) theta + t^2 w_B
        assert c1 == pytest.approx(2 * t * (1 - t)) and c2 == pytest.approx(t * t)
    assert curve_coefficients("polychain", 0.0) == (0.0, 0.0)
    assert curve_coefficients("polychain", 0.5) == (1.0, 0.0)  # the bend is theta
    assert curve_coefficients("polychain", 1.0) == (0.0, 1.0)
    assert curve_coefficients("polychain", 0.75) == (0.5, 0.5)  # halfway from theta to w_B
    with pytest.raises(ConfigError, match="curve='spline'"):
        curve_coefficients("spline", 0.5)


def _dataset(digits_small):
    return torch.utils.data.TensorDataset(*digits_small)


@pytest.mark.parametrize("kind", ["bezier", "polychain"])
def test_curve_training_lowers_the_middle_and_resumes_exactly(kind, digits_small, tmp_path):
    a, b = make_model("mlp", 0), make_model("mlp", 1)
    w_a, w_b = _params(a), _params(b)
    ds = _dataset(digits_small)
    kw = dict(kind=kind, lr=0.5, batch_size=32, seed=4, fingerprint="f")
    straight = train_curve(a, w_a, w_b, ds, epochs=3, **kw)
    state = tmp_path / "state.pt"
    first = train_curve(a, w_a, w_b, ds, epochs=1, state_path=state, **kw)
    resumed = train_curve(a, w_a, w_b, ds, epochs=3, state_path=state, **kw)
    assert first.epochs_done == 1 and resumed.resumed_from_epoch == 1 and resumed.passes == 2
    for n in w_a:
        torch.testing.assert_close(resumed.theta[n], straight.theta[n], rtol=0, atol=1e-14)
    assert resumed.train_loss == pytest.approx(straight.train_loss, rel=1e-12)
    for n, p in a.named_parameters():  # the model itself is untouched
        assert torch.equal(p, w_a[n])
    # the trained middle of the curve has a lower loss than the straight line's middle
    objective = Objective(a, digits_small, device="cpu")
    c1, c2 = curve_coefficients(kind, 0.5)
    dirs = [difference(w_a, straight.theta), difference(w_a, w_b)]
    trained = evaluate_path(objective, w_a, dirs, [(c1, c2)], [0.5], kind=kind)
    line = linear_path(objective, w_a, w_b, [0.5])
    assert trained.loss[0] < line.loss[0] - 0.01  # 2.27 vs 2.30 (random end points, 9 steps)
    with pytest.raises(ResultFileError, match="other settings"):
        train_curve(a, w_a, w_b, ds, epochs=3, state_path=state, **{**kw, "fingerprint": "g"})


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_barrier_of_a_checkpoint_with_itself_is_zero(kind, tmp_path):
    ckpt = save(tmp_path / "a.pt", kind, make_model(kind, 0).float())
    result = connect_checkpoints(ckpt, ckpt, points=5, samples=64, batch_size=32, device="cpu", quiet=True)
    linear = result.paths["linear"]
    assert linear.barriers() == {
        "barrier_loss": 0.0,
        "barrier_loss_at": 0.0,
        "barrier_error": 0.0,
        "barrier_error_at": 0.0,
    }
    assert np.ptp(linear.loss) == 0.0
    assert result.metadata["bn"] == ("recalibrate" if kind == "cnn" else "none")


def test_connect_writes_a_result_that_loads_back(tmp_path):
    a = save(tmp_path / "a.pt", "cnn", make_model("cnn", 0).float())
    b = save(tmp_path / "b.pt", "cnn", make_model("cnn", 1).float())
    out = tmp_path / "out"
    kw = dict(points=3, samples=48, batch_size=24, device="cpu", quiet=True, out=out)
    result = connect_checkpoints(a, b, curve="polychain", epochs=1, split="test", **kw)
    loaded = ConnectResult.from_json(out / "connect.json")
    assert set(loaded.paths) == {"linear", "polychain"} and loaded.metadata["split"] == "test"
    for kind, path in result.paths.items():
        np.testing.assert_array_equal(loaded.paths[kind].loss, path.loss)
        assert loaded.paths[kind].barriers() == path.barriers()
    assert loaded.paths["polychain"].bn == "recalibrate"
    assert (out / "polychain.pt").is_file() and (out / "polychain_state.pt").is_file()
    # the same command again reuses the finished curve; other settings are refused
    again = connect_checkpoints(a, b, curve="polychain", epochs=1, split="test", **kw)
    assert again.paths["polychain"].info["training_passes"] == 0
    np.testing.assert_array_equal(again.paths["polychain"].loss, result.paths["polychain"].loss)
    with pytest.raises(ResultFileError, match="other settings"):
        connect_checkpoints(a, b, **{**kw, "points": 4})
    with pytest.raises(ConfigError, match="bn='states' needs a model with batch norm"):
        mlp = save(tmp_path / "m.pt", "mlp", make_model("mlp", 0).float())
        connect_checkpoints(mlp, mlp, bn="states", points=3, device="cpu", quiet=True)


def test_a_result_with_other_settings_names_what_differs(tmp_path):
    a = save(tmp_path / "a.pt", "mlp", make_model("mlp", 0).float())
    b = save(tmp_path / "b.pt", "mlp", make_model("mlp", 1).float())
    out = tmp_path / "out"
    kw = dict(samples=32, batch_size=16, device="cpu", quiet=True, out=out)
    connect_checkpoints(a, b, points=3, **kw)
    with pytest.raises(
        ResultFileError, match=r"other settings or checkpoints \(differs in: points\); use another"
    ):
        connect_checkpoints(a, b, points=4, **kw)
    with pytest.raises(ResultFileError, match=r"\(differs in: b\)"):
        connect_checkpoints(a, a, points=3, **kw)
    # a result written before connect.json recorded its settings: refused by its fingerprint alone
    doc = json.loads((out / "connect.json").read_text())
    del doc["settings"]
    (out / "connect.json").write_text(json.dumps(doc))
    connect_checkpoints(a, b, points=3, **kw)  # the same fingerprint: a rerun
    (out / "connect.json").write_text(json.dumps(doc))
    with pytest.raises(ResultFileError, match=r"other settings or checkpoints; use another output folder"):
        connect_checkpoints(a, b, points=4, **kw)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="^out='.*file' is an existing file, not a folder"):
        connect_checkpoints(a, b, points=3, **{**kw, "out": tmp_path / "file"})
