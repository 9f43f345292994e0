"""compute_measures: names, options, exact restoration of the weights, seeds, results as JSON."""

from __future__ import annotations

import json
import math

import pytest
import torch
from measure_helpers import FAST_OPTIONS, cnn_objective

from landscape.errors import ConfigError
from landscape.measures import (
    MEASURE_NAMES,
    MeasureOptions,
    MeasureResult,
    compute_measures,
    parse_measure_names,
)

FAST = MeasureOptions(**FAST_OPTIONS)


def _state(obj):
    return {k: v.detach().clone() for k, v in obj.model.state_dict().items()}


def test_every_measure_restores_weights_and_buffers_bit_exactly():
    obj = cnn_objective()
    obj.model.train()  # the caller's mode: measures run in eval mode and give it back
    before = _state(obj)
    results = compute_measures(obj, list(MEASURE_NAMES), FAST)
    assert list(results) == list(MEASURE_NAMES)
    after = obj.model.state_dict()
    for name, t in before.items():
        assert torch.equal(after[name], t), name
    assert all(p.grad is None for p in obj.params)
    assert all(m.training for m in obj.model.modules())  # the caller's flags are back


def test_weights_are_restored_after_an_error():
    obj = cnn_objective()
    before = _state(obj)
    calls = {"n": 0}
    original = obj.batch_loss

    def failing(x, y):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("boom")
        return original(x, y)

    obj.batch_loss = failing  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="boom"):
        compute_measures(obj, "worst", FAST)
    for name, t in before.items():
        assert torch.equal(obj.model.state_dict()[name], t), name


def test_same_seed_reproduces_and_another_seed_differs():
    names = ["worst", "average", "random-max", "keskar", "relative-flatness"]
    opts = MeasureOptions(**{**FAST.to_dict(), "relative_flatness_method": "hutchinson"})
    a = compute_measures(cnn_objective(), names, opts)
    b = compute_measures(cnn_objective(), names, opts)
    c = compute_measures(cnn_objective(), names, MeasureOptions(**{**opts.to_dict(), "seed": 8}))
    for name in names:
        assert a[name].value == b[name].value, name
        assert a[name].seed == 7 and c[name].seed == 8
        if name != "keskar":  # from any start the first sign step lands on the same corner of the box
            assert a[name].value != c[name].value, name


def test_results_are_json_and_round_trip():
    results = compute_measures(cnn_objective(), "worst,average,fisher-rao,overlap", FAST)
    for name, res in results.items():
        d = json.loads(json.dumps(res.to_dict()))
        assert d["name"] == name
        assert {"value", "stderr", "seed", "settings", "cost", "details"} <= set(d)
        assert set(d["cost"]) == {"forward_passes", "backward_passes", "hvps", "seconds"}
        back = MeasureResult.from_dict(d)
        assert back.value == res.value and back.settings == res.settings
    worst = results["worst"].to_dict()
    assert worst["settings"] == {
        "rho": 0.05,
        "perturb_norm": "l2",
        "adaptive": False,
        "m": 8,
        "steps": 3,
        "restarts": 1,
        "num_batches": 2,
        "samples_used": 16,
    }
    assert isinstance(worst["details"]["stalled"], bool) and worst["stderr"] is not None
    assert results["average"].stderr is not None and results["fisher-rao"].stderr is None


def test_names():
    assert parse_measure_names("worst, average,worst") == ["worst", "average"]
    with pytest.raises(ConfigError, match="measure 'sharp' is not known; choose from worst, average"):
        parse_measure_names("worst,sharp")
    with pytest.raises(ConfigError, match="measure '' is not known"):
        parse_measure_names("")


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("rho", 0.0, "rho=0.0 must be > 0"),
        ("perturb_norm", "l1", "perturb_norm='l1' is not valid; choose one of 'l2', 'linf'"),
        ("steps", 0, "steps=0 must be an integer >= 1"),
        ("m", 0, "m=0 must be an integer >= 1"),
        ("mc_samples", 1.5, "mc_samples=1.5 must be an integer >= 1"),
        ("hutchinson_probes", 1, "hutchinson_probes=1 must be an integer >= 2"),
        ("eps", -1.0, "eps=-1.0 must be > 0"),
        ("pac_bayes_target", 1.0, r"pac_bayes_target=1.0 must be in \(0, 1\)"),
        ("seed", -1, "seed=-1 must be an integer >= 0"),
        ("relative_flatness_method", "dense", "relative_flatness_method='dense' is not valid"),
    ],
)
def test_bad_options_fail_before_any_work(field, value, message):
    opts = MeasureOptions(**{field: value})
    with pytest.raises(ConfigError, match=message):
        compute_measures(cnn_objective(), "fisher-rao", opts)


def test_unknown_option_names_are_refused():
    with pytest.raises(ConfigError, match=r"unknown measure options \['radius'\]"):
        MeasureOptions.from_dict({"radius": 1.0})
    assert MeasureOptions.from_dict(FAST.to_dict()) == FAST


def test_sharded_objectives_are_refused():
    obj = cnn_objective()
    obj.shard = (0, 2)
    with pytest.raises(ConfigError, match=r"objective.shard=\(0, 2\)"):
        compute_measures(obj, "average", FAST)


def test_non_finite_values_follow_the_one_json_policy():
    # NaN -> null, +/-inf -> "inf"/"-inf" (landscape.io.jsonio), in the value, stderr and details
    res = MeasureResult(
        name="pac-bayes",
        value=float("inf"),
        stderr=float("nan"),
        settings={},
        seed=0,
        forward_passes=1.0,
        backward_passes=0.0,
        details={"sigma": float("nan"), "bracket": [float("-inf"), 2.0], "status": "no-sigma"},
    )
    d = json.loads(json.dumps(res.to_dict(), allow_nan=False))
    assert d["value"] == "inf" and d["stderr"] is None
    assert d["details"] == {"sigma": None, "bracket": ["-inf", 2.0], "status": "no-sigma"}
    back = MeasureResult.from_dict(d)
    assert back.value == float("inf") and back.stderr is None
    nan_value = MeasureResult.from_dict({**d, "value": None})
    assert math.isnan(nan_value.value)
    # files written before the policy spelled NaN as the string "nan": they still read
    assert math.isnan(MeasureResult.from_dict({**d, "value": "nan"}).value)
