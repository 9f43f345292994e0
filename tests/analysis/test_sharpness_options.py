"""``SharpnessOptions``: one options object for the CLI and both backends; keywords still work."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from landscape.analysis import SharpnessOptions, sharpness
from landscape.errors import ConfigError
from landscape.hessian.testing import dense_hessian, digits, make_mlp
from landscape.measures import MeasureOptions, compute_measures
from landscape.objective.core import Objective


def _objective() -> Objective:
    return Objective(make_mlp(), digits(40), batch_size=20, dtype=torch.float64)


def test_options_and_keywords_give_the_same_result() -> None:
    obj = _objective()
    options = SharpnessOptions(top_k=2, with_trace=True, trace_matvecs=12)
    by_options = sharpness(obj, options, tol=1e-9)
    by_keywords = sharpness(obj, top_k=2, tol=1e-9, with_trace=True, trace_matvecs=12)
    np.testing.assert_array_equal(by_options.eigenvalues, by_keywords.eigenvalues)
    assert by_options.trace.estimate == by_keywords.trace.estimate
    assert options.tol == 1e-6  # the caller's options are not changed by the keywords
    assert by_options.tol == 1e-9
    lam = torch.linalg.eigvalsh(dense_hessian(obj)).numpy()
    np.testing.assert_allclose(by_options.eigenvalues, lam[::-1][:2], rtol=1e-7)  # largest first


def test_an_unknown_keyword_is_named() -> None:
    with pytest.raises(ConfigError, match=r"unknown sharpness options \['topk'\]"):
        sharpness(_objective(), topk=3)


def test_pyhessian_refuses_a_per_batch_which_it_cannot_honour() -> None:
    with pytest.raises(ConfigError, match="per_batch_which='LA' is not available with backend='pyhessian'"):
        sharpness(_objective(), backend="pyhessian", per_batch=2, per_batch_which="LA")


def test_bad_measure_settings_fail_before_any_product() -> None:
    with pytest.raises(ConfigError, match="measure 'sharpest' is not known"):
        sharpness(_objective(), measures=("sharpest",))
    with pytest.raises(ConfigError, match="rho=-1.0"):
        sharpness(_objective(), measures=("average",), measure_options=MeasureOptions(rho=-1.0))


def test_measures_use_the_run_seed_and_overlap_reuses_the_lanczos_vectors() -> None:
    obj = _objective()
    opts = MeasureOptions(mc_samples=4, k=2, seed=99)  # the seed is replaced by sharpness's
    res = sharpness(obj, top_k=3, tol=1e-10, seed=5, measures=("average", "overlap"), measure_options=opts)
    assert list(res.measures) == ["average", "overlap"]
    ref = compute_measures(obj, ["average"], MeasureOptions(mc_samples=4, k=2, seed=5))["average"]
    assert res.measures["average"].value == ref.value and res.measures["average"].seed == 5
    overlap = res.measures["overlap"]
    assert overlap.hvps == 0  # no Lanczos of its own: the eigen stage's two top vectors
    # against the dense top-2 eigenspace of the Hessian
    H = dense_hessian(obj)
    _, U = torch.linalg.eigh(H)
    g = torch.cat([t.reshape(-1) for t in obj.gradient()[1]])
    frac = float((U[:, -2:].T @ g).norm() ** 2 / g.norm() ** 2)
    assert overlap.value == pytest.approx(frac, rel=1e-7)
    back = type(res).from_dict(res.to_dict())
    assert back.measures["average"].value == res.measures["average"].value


def test_a_measure_stage_is_keyed_by_the_options_that_measure_reads(tmp_path, monkeypatch) -> None:
    import landscape.measures.registry as registry

    run = dict(top_k=1, tol=1e-6, seed=2, measures=("average", "worst"), resume_dir=tmp_path)
    before = MeasureOptions(mc_samples=4, steps=2)
    after = replace(before, m=10, perturb_norm="linf")  # options only worst reads
    options = SharpnessOptions(measures=run["measures"], measure_options=before)
    changed = replace(options, measure_options=after)
    assert changed.measure_stage_options("average") == options.measure_stage_options("average")
    assert changed.measure_stage_options("worst") != options.measure_stage_options("worst")
    first = sharpness(_objective(), measure_options=before, **run)
    second = sharpness(_objective(), measure_options=after, **run)
    assert second.notes == ["stages read back from an interrupted run: eigen, measure-average"]
    assert second.measures["average"].to_dict() == first.measures["average"].to_dict()
    assert second.measures["worst"].settings["m"] == 10
    # worst gains an option: its stored stage no longer fits, average's still does
    worst = registry.MEASURES["worst"]
    monkeypatch.setitem(registry.MEASURES, "worst", replace(worst, options={**worst.options, "new": 1}))
    third = sharpness(_objective(), measure_options=after, **run)
    assert third.notes == ["stages read back from an interrupted run: eigen, measure-average"]
    assert third.measures["worst"].value == second.measures["worst"].value
    fourth = sharpness(_objective(), measure_options=after, **run)
    assert fourth.notes == ["stages read back from an interrupted run: eigen, measure-average, measure-worst"]
