"""``landscape compare`` over the runs of a finished demo reuses every lambda_max the demo measured.

The demo writes each run's ``sharpness.json`` through the library's one writer, with the checkpoint
digest and sample ``compare`` checks; nothing is recomputed (the solvers are made to fail).
"""

from __future__ import annotations

import dataclasses
import json

import pytest
from click.testing import CliRunner

from landscape.cli.main import cli
from landscape.studies.demo import run_demo
from landscape.studies.demo_plan import demo_settings


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    tiny = dataclasses.replace(
        demo_settings(quick=True),
        epochs=1,
        sharpness_samples=48,
        trace_matvecs=9,
        density_runs=1,
        density_steps=4,
        surface_points=3,
        interpolation_points=3,
    )
    out = tmp_path_factory.mktemp("demo")
    return run_demo(out, tiny, device="cpu", log=lambda line: None)


def _never(*args, **kwargs):
    raise AssertionError("recomputed: compare did not reuse the demo's sharpness.json")


def test_compare_over_a_finished_demo_reuses_every_lambda_max(demo, tmp_path, monkeypatch):
    import landscape.hessian
    import landscape.measures

    monkeypatch.setattr(landscape.hessian, "top_eigenpairs", _never)
    monkeypatch.setattr(landscape.measures, "compute_measures", _never)
    s = demo.settings
    runs = demo.out_dir / "runs"
    measured = {r["run"]: r for r in demo.rows}
    assert len(measured) == 8
    sample = [
        "--sharpness",
        str(s.sharpness_samples),
        "--seed",
        str(s.analysis_seed),
        "--tol",
        str(s.lanczos_tol),
    ]
    for name, extra in (("plain", []), ("asked", [*sample, "--measure", "average,worst"])):
        out = tmp_path / name
        r = CliRunner().invoke(cli, ["compare", str(runs), "--no-figures", "-o", str(out), *extra])
        assert r.exit_code == 0, r.output
        assert "warning" not in r.stderr
        doc = json.loads((out / "comparison.json").read_text())
        assert sorted(run["name"] for run in doc["runs"]) == sorted(measured)
        for run in doc["runs"]:
            stored = runs / run["name"] / "sharpness.json"
            assert run["lambda_max_source"] == str(stored) and run["lambda_max_note"] is None
            assert run["lambda_max"] == measured[run["name"]]["lambda_max"]
            assert run["lambda_max"] == json.loads(stored.read_text())["eigenvalues"][0]
    for run in doc["runs"]:  # the measures too, from the same files
        for name in ("average", "worst"):
            assert run["measures"][name]["source"] == str(runs / run["name"] / "sharpness.json")
            assert run["measures"][name]["value"] == measured[run["name"]][f"sharpness_{name}"]


def test_the_demo_groups_what_compare_groups(demo, tmp_path):
    r = CliRunner().invoke(cli, ["compare", str(demo.out_dir / "runs"), "--json"])
    assert r.exit_code == 0, r.output
    groups = {g["group"]: g for g in json.loads(r.stdout)["groups"]["groups"]}
    labels = {
        "SGD": "SGD",
        "SAM rho=0.2": "SAM rho=0.2",
        "SAM-direction (global) rho=0.2": "SAM-direction global rho=0.2",
    }
    for g in demo.grouping.groups:
        if g.group in labels:
            theirs = groups[labels[g.group]]["stats"]["lambda_max"]
            assert theirs["mean"] == pytest.approx(g.stats["lambda_max"].mean, rel=1e-12)
            assert theirs["ci95_low"] == pytest.approx(g.stats["lambda_max"].ci95_low, rel=1e-12)
