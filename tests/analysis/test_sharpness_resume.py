"""An interrupted ``sharpness`` resumes from its finished stages and gives the uninterrupted result."""

from __future__ import annotations

import importlib
import json

import numpy as np
import pytest
import torch

from landscape.analysis import sharpness
from landscape.hessian.testing import digits, make_cnn
from landscape.objective.core import Objective

# the module, not the function of the same name that landscape.hessian exports
sharpness_module = importlib.import_module("landscape.analysis.pipeline")
OPTIONS = dict(
    top_k=3, tol=1e-9, with_trace=True, trace_matvecs=12, density=True, density_runs=2, density_steps=8
)


def _objective() -> Objective:
    return Objective(make_cnn(), digits(48), batch_size=20, dtype=torch.float64)


class _Interrupted(Exception):  # noqa: N818 - it stands for a kill, not an error of the code
    pass


def test_interrupted_run_reuses_finished_stages(tmp_path, monkeypatch):
    full = sharpness(_objective(), **OPTIONS, seed=3)
    stages = tmp_path / "stages"

    def killed(*args, **kwargs):
        raise _Interrupted

    with monkeypatch.context() as m:
        m.setattr(sharpness_module, "slq", killed)  # the density stage is "killed"
        with pytest.raises(_Interrupted):
            sharpness(_objective(), **OPTIONS, seed=3, resume_dir=stages)
    assert sorted(p.name for p in stages.glob("*.key.json")) == ["eigen.key.json", "trace.key.json"]

    calls = []
    real_lanczos = sharpness_module.lanczos
    monkeypatch.setattr(sharpness_module, "lanczos", lambda *a, **k: calls.append(1) or real_lanczos(*a, **k))
    resumed = sharpness(_objective(), **OPTIONS, seed=3, resume_dir=stages)
    assert calls == []  # the eigenvalues were read back, not recomputed
    assert resumed.notes == ["stages read back from an interrupted run: eigen, trace"]
    np.testing.assert_array_equal(resumed.eigenvalues, full.eigenvalues)
    assert resumed.trace.estimate == full.trace.estimate
    np.testing.assert_array_equal(resumed.density.density, full.density.density)
    assert resumed.matvecs == full.matvecs == full.eigen_matvecs + full.trace.matvecs + full.density.matvecs


def test_other_settings_or_weights_recompute_the_stage(tmp_path):
    stages = tmp_path / "stages"
    sharpness(_objective(), top_k=2, tol=1e-9, seed=0, resume_dir=stages)
    assert sharpness(_objective(), top_k=2, tol=1e-9, seed=0, resume_dir=stages).notes
    assert not sharpness(_objective(), top_k=2, tol=1e-8, seed=0, resume_dir=stages).notes  # tolerance
    assert not sharpness(_objective(), top_k=2, tol=1e-8, seed=1, resume_dir=stages).notes  # seed
    other = _objective()
    with torch.no_grad():
        other.params[0].add_(1e-3)
    res = sharpness(other, top_k=2, tol=1e-8, seed=1, resume_dir=stages)
    assert not res.notes  # other weights
    ref = sharpness(other, top_k=2, tol=1e-8, seed=1)
    np.testing.assert_array_equal(res.eigenvalues, ref.eigenvalues)


def test_a_damaged_stage_is_recomputed(tmp_path):
    stages = tmp_path / "stages"
    first = sharpness(_objective(), top_k=2, tol=1e-9, resume_dir=stages)
    (stages / "eigen.json").write_text("{not json")
    again = sharpness(_objective(), top_k=2, tol=1e-9, resume_dir=stages)
    assert not again.notes
    np.testing.assert_array_equal(again.eigenvalues, first.eigenvalues)
    assert json.loads((stages / "eigen.json").read_text())["eigenvalues"]


def test_cli_keeps_stages_only_until_the_result_is_written(cnn_checkpoint, tmp_path):
    from click.testing import CliRunner

    from landscape.analysis.result_file import STAGE_FOLDER
    from landscape.cli.main import cli

    out = tmp_path / "out"
    stages = out / STAGE_FOLDER
    stages.mkdir(parents=True)
    (stages / "eigen.key.json").write_text('{"key": "stale"}')  # left by an older, other run
    args = [
        "sharpness",
        str(cnn_checkpoint),
        "--samples",
        "32",
        "--top-k",
        "2",
        "--device",
        "cpu",
        "-q",
        "-o",
        str(out),
    ]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert (out / "sharpness.json").is_file() and not stages.exists()
    assert json.loads((out / "sharpness.json").read_text())["notes"] == []
