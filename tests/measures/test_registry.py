"""The measures registry: each entry names the options its measure reads, and only those key it."""

from __future__ import annotations

from dataclasses import fields, replace

import pytest
import torch
from measure_helpers import FAST_OPTIONS, cnn_objective, quadratic_objective, spd
from toy_measure import ENTRY, TOY_ORDER

import landscape.measures.registry as registry
from landscape.errors import ConfigError
from landscape.measures import (
    MEASURE_NAMES,
    Measure,
    MeasureOptions,
    compute_measures,
    measure_label,
    measure_names,
    measure_settings,
    parse_measure_names,
    register_measure,
    shared_options,
)
from landscape.measures.options import FIELD_NAMES

# every branch that reads another option: relative-flatness chooses its method under 'auto'
BRANCHES = [
    {},
    {"relative_flatness_method": "hutchinson", "pac_bayes_magnitude": True, "eps": 0.02},
]
# the fields of MeasureOptions before the registry: a stored settings dict keeps exactly these
STORED_FIELDS = [
    "rho",
    "perturb_norm",
    "adaptive",
    "m",
    "steps",
    "restarts",
    "mc_samples",
    "random_max_samples",
    "eps",
    "pac_bayes_target",
    "pac_bayes_eps",
    "pac_bayes_magnitude",
    "bisection_steps",
    "fisher_rao_depth",
    "layer",
    "relative_flatness_method",
    "relative_flatness_max_exact",
    "hutchinson_probes",
    "k",
    "lanczos_tol",
    "seed",
]
D = 6
W_STAR = torch.tensor([1.0, -2.0, 0.5, 3.0, -1.5, 0.25], dtype=torch.float64)


class _Recording(MeasureOptions):
    """:class:`MeasureOptions` that notes every field read after construction (validation excepted)."""

    def __init__(self, **options) -> None:
        self._read: set[str] = set()
        super().__init__(**options)
        self._read.clear()

    def validate(self) -> None:  # validated by the test before; here it would read every field
        MeasureOptions(**{f.name: object.__getattribute__(self, f.name) for f in fields(self)}).validate()

    def __getattribute__(self, name: str):
        if name in FIELD_NAMES:
            object.__getattribute__(self, "_read").add(name)
        return object.__getattribute__(self, name)


@pytest.fixture
def own_registry(monkeypatch):
    """A copy of the registry for the test to add to; the module's own is left as it was."""
    monkeypatch.setattr(registry, "MEASURES", dict(registry.MEASURES))


@pytest.mark.parametrize("name", MEASURE_NAMES)
def test_each_measure_reads_exactly_the_options_of_its_entry(name):
    entry = registry.MEASURES[name]
    read: set[str] = set()
    for branch in BRANCHES:
        opts = _Recording(**{**FAST_OPTIONS, **branch})
        result = entry.compute(cnn_objective(), opts)
        read |= opts._read
        assert result.name == name
        assert (result.hvps > 0) == entry.hessian_products, "hessian_products says what the measure spends"
    # a read option missing from the entry would let a stored result outlive a change of that option
    assert read == set(entry.options)


def test_entries_take_the_defaults_of_the_options_and_have_labels():
    defaults = MeasureOptions()
    for name in MEASURE_NAMES:
        entry = registry.MEASURES[name]
        assert entry.name == name and measure_label(name) == entry.label and entry.label
        assert dict(entry.options) == {k: getattr(defaults, k) for k in entry.options}
        assert measure_settings(name) == dict(entry.options)
    assert measure_label("worst") == "worst-case sharpness"
    assert registry.MEASURES["overlap"].top_eigenvectors == "k"
    with pytest.raises(ConfigError, match="measure 'sharp' is not known; choose from worst, average"):
        measure_label("sharp")
    with pytest.raises(ConfigError, match=r"\['radius'\] are not fields of MeasureOptions"):
        shared_options("rho", "radius")


@pytest.mark.parametrize(
    "worst_only", [{"m": 4}, {"perturb_norm": "linf"}, {"m": None, "perturb_norm": "linf"}], ids=str
)
def test_an_option_only_worst_reads_leaves_average_untouched(worst_only):
    base = MeasureOptions(mc_samples=4, steps=2, m=2, seed=3)
    other = replace(base, **worst_only)
    assert measure_settings("average", other) == measure_settings("average", base)
    assert measure_settings("worst", other) != measure_settings("worst", base)
    before = compute_measures(cnn_objective(), ["average", "worst"], base)
    after = compute_measures(cnn_objective(), ["average", "worst"], other)
    assert after["average"].settings == before["average"].settings
    assert after["average"].value == before["average"].value
    assert after["worst"].settings != before["worst"].settings


def test_stored_dicts_give_the_same_settings_and_missing_options_their_defaults():
    opts = MeasureOptions(rho=0.2, m=3, k=4, seed=2)
    for name in MEASURE_NAMES:
        assert measure_settings(name, opts.to_dict()) == measure_settings(name, opts)
    older = {k: v for k, v in opts.to_dict().items() if k != "restarts"}  # written before 'restarts'
    assert measure_settings("worst", older)["restarts"] == 1
    assert measure_settings("worst", older)["m"] == 3


def test_to_dict_keeps_the_stored_fields_and_extra_only_when_set():
    assert list(MeasureOptions().to_dict()) == STORED_FIELDS
    with_extra = MeasureOptions(rho=0.1, extra={"toy_order": 1.0})
    assert with_extra.to_dict()["extra"] == {"toy_order": 1.0}
    assert MeasureOptions.from_dict(with_extra.to_dict()) == with_extra
    assert with_extra.get("rho") == 0.1 and with_extra.get("toy_order") == 1.0
    assert MeasureOptions().get("toy_order", 2.0) == 2.0


def test_registered_measure_computes_through_compute_measures(own_registry):
    register_measure(ENTRY)
    assert measure_names() == (*MEASURE_NAMES, "gradient-norm")
    assert parse_measure_names("worst,gradient-norm") == ["worst", "gradient-norm"]
    A, w = spd(D, 4), torch.zeros(D, dtype=torch.float64)
    g = A @ (w - W_STAR)  # the gradient of 1/2 (w - w*)^T A (w - w*)
    obj = quadratic_objective(A, W_STAR, w)
    default = compute_measures(obj, "gradient-norm")["gradient-norm"]
    assert default.value == pytest.approx(float(g.norm()), rel=1e-12)
    opts = MeasureOptions(steps=2, extra={"toy_order": 1.0})
    res = compute_measures(obj, ["average", "gradient-norm"], opts)
    assert res["gradient-norm"].value == pytest.approx(float(g.abs().sum()), rel=1e-12)
    assert res["gradient-norm"].settings == {"order": 1.0}
    assert measure_settings("gradient-norm", opts) == {"toy_order": 1.0}
    assert measure_settings("gradient-norm") == {"toy_order": TOY_ORDER}
    assert "toy_order" not in measure_settings("average", opts)  # another measure's option
    assert measure_label("gradient-norm") == "gradient norm"


def test_extra_names_no_registered_measure_reads_are_refused(own_registry):
    obj = cnn_objective()
    with pytest.raises(ConfigError, match=r"extra holds \['toy_order'\], which no registered measure reads"):
        compute_measures(obj, "fisher-rao", MeasureOptions(extra={"toy_order": 1.0}))
    with pytest.raises(ConfigError, match=r"extra holds \['rho'\], which are fields of MeasureOptions"):
        compute_measures(obj, "fisher-rao", MeasureOptions(extra={"rho": 1.0}))
    with pytest.raises(ConfigError, match="extra=3 must be a dict"):
        compute_measures(obj, "fisher-rao", MeasureOptions(extra=3))  # type: ignore[arg-type]
    register_measure(ENTRY)
    assert compute_measures(obj, "fisher-rao", MeasureOptions(extra={"toy_order": 1.0}))["fisher-rao"]


def test_a_measure_s_own_check_runs_before_any_measure(own_registry):
    def check(settings):
        if settings["toy_order"] < 1:
            raise ConfigError(f"toy_order={settings['toy_order']!r} must be >= 1")

    register_measure(replace(ENTRY, check=check))
    calls = []
    registry.MEASURES["worst"] = replace(registry.MEASURES["worst"], compute=lambda *a: calls.append(a))
    with pytest.raises(ConfigError, match="toy_order=0.5 must be >= 1"):
        compute_measures(cnn_objective(), "worst,gradient-norm", MeasureOptions(extra={"toy_order": 0.5}))
    assert calls == []


@pytest.mark.parametrize(
    "entry, message",
    [
        (replace(ENTRY, name="worst"), "measure 'worst' is registered already"),
        (replace(ENTRY, name="a,b"), "measure name 'a,b' must be non-empty, without commas"),
        (replace(ENTRY, name=""), "measure name '' must be non-empty"),
        (
            replace(ENTRY, name="toy", options={"rho": 1.0}),
            "option 'rho' of measure 'toy' defaults to 1.0, but MeasureOptions gives it 0.05",
        ),
        (
            replace(ENTRY, name="toy", options={"toy_order": 3.0}),
            "option 'toy_order' of measure 'toy' defaults to 3.0, but measure 'gradient-norm' gives it 2.0",
        ),
    ],
    ids=["taken", "comma", "empty", "field-default", "own-default"],
)
def test_register_refuses_names_and_defaults_that_would_clash(own_registry, entry: Measure, message):
    register_measure(ENTRY)
    with pytest.raises(ConfigError, match=message):
        register_measure(entry)


def test_registered_measure_runs_in_sharpness_keyed_by_its_own_option(own_registry, tmp_path):
    from landscape.analysis import SharpnessOptions, sharpness

    register_measure(ENTRY)
    A, w = spd(D, 5), torch.zeros(D, dtype=torch.float64)
    g = A @ (w - W_STAR)
    run = dict(top_k=1, tol=1e-8, measures=("gradient-norm",), resume_dir=tmp_path)
    one = MeasureOptions(extra={"toy_order": 1.0})
    res = sharpness(quadratic_objective(A, W_STAR, w), measure_options=one, **run)
    assert res.measures["gradient-norm"].value == pytest.approx(float(g.abs().sum()), rel=1e-12)
    assert SharpnessOptions(measures=run["measures"], measure_options=one).measure_stage_options(
        "gradient-norm"
    ) == {"name": "gradient-norm", "options": {"toy_order": 1.0}}
    again = sharpness(quadratic_objective(A, W_STAR, w), measure_options=replace(one, rho=0.3), **run)
    assert again.notes == ["stages read back from an interrupted run: eigen, measure-gradient-norm"]
    other = sharpness(quadratic_objective(A, W_STAR, w), **run)  # the default order 2
    assert other.notes == ["stages read back from an interrupted run: eigen"]
    assert other.measures["gradient-norm"].value == pytest.approx(float(g.norm()), rel=1e-12)
    with pytest.raises(ConfigError, match="measure 'gradient-nom' is not known"):
        sharpness(quadratic_objective(A, W_STAR, w), top_k=1, measures=("gradient-nom",))
