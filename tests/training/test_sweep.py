"""The sweep grid: which points exist, skipping finished runs, resuming interrupted ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from landscape.data.datasets import DataSpec
from landscape.errors import ConfigError, ResultFileError
from landscape.models.builders import ModelSpec
from landscape.training import TrainConfig, train
from landscape.training.sweep import (
    PlannedRun,
    SweepPoint,
    _train_process,
    describe_plan,
    plan_runs,
    plan_sweep,
    run_sweep,
)
from landscape.training.sweep_worker import job_document, run_job


def _base(epochs: int = 1) -> TrainConfig:
    # digits, 64 examples, a 64-8-10 MLP: a run takes a fraction of a second
    return TrainConfig(
        model=ModelSpec("mlp", {"hidden": [8]}),
        data=DataSpec("digits", split="train", subset=64),
        lr=0.1,
        batch_size=32,
        epochs=epochs,
    )


def test_grid_gives_decomposition_and_rho_only_where_they_apply():
    points = plan_sweep(
        ["sgd", "sam", "sam-direction", "sam-magnitude"],
        [0, 1, 2],
        decompositions=["global", "elementwise"],
        rhos=[0.05, 0.2],
    )
    names = [p.name for p in points]
    # sgd: 3 seeds; sam: 2 rho x 3; direction and magnitude: 2 decompositions x 2 rho x 3
    assert len(points) == 3 + 6 + 12 + 12 == len(set(names))
    assert names[:3] == ["sgd_seed0", "sgd_seed1", "sgd_seed2"]
    assert "sam_rho0.05_seed2" in names and "sam-magnitude_elementwise_rho0.2_seed1" in names
    assert all(p.rho is None and p.decomposition is None for p in points if p.optimizer == "sgd")
    assert all(p.decomposition is None for p in points if p.optimizer == "sam")
    assert {p.decomposition for p in points if p.optimizer == "sam-direction"} == {"global", "elementwise"}


def test_grid_without_rho_or_decomposition_uses_method_defaults():
    points = plan_sweep(["adam", "sam-magnitude", "sgd-hess"], [3])
    assert [p.name for p in points] == ["adam_seed3", "sam-magnitude_seed3", "sgd-hess_seed3"]
    config = points[1].config(_base())
    assert config.rho is None and "decomposition" not in config.optimizer_kwargs
    assert config.seed == 3 and config.data.seed == 3  # the sample's seed follows the run's, as in train


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"optimizers": ["sgd", "lbfgs"], "seeds": [0]}, "optimizers: 'lbfgs' is not valid"),
        ({"optimizers": ["sam"], "seeds": [0], "rhos": [-0.1]}, r"rhos: -0.1 is not valid"),
        ({"optimizers": ["sam"], "seeds": []}, "seeds is empty"),
        ({"optimizers": [], "seeds": [0]}, "optimizers is empty"),
        ({"optimizers": ["sgd"], "seeds": [0, 0]}, "seeds: 0 is given twice"),
        ({"optimizers": ["sgd"], "seeds": [-1]}, "seeds: -1 is not valid"),
        (
            {"optimizers": ["sam-magnitude"], "seeds": [0], "decompositions": ["sign"]},
            "decompositions: 'sign'",
        ),
    ],
    ids=[
        "unknown-optimizer",
        "negative-rho",
        "no-seeds",
        "no-optimizers",
        "repeated-seed",
        "negative-seed",
        "bad-dec",
    ],
)
def test_bad_grid_is_refused_in_one_line(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        plan_sweep(kwargs.pop("optimizers"), kwargs.pop("seeds"), **kwargs)


def test_dry_run_plan_lists_each_run_with_its_status(tmp_path: Path):
    planned = plan_runs(tmp_path / "runs", _base(), plan_sweep(["sgd", "sam"], [0, 1], rhos=[0.2]))
    lines = describe_plan(planned)
    assert lines == [
        "[1/4] new    sgd_seed0  (optimizer=sgd seed=0)",
        "[2/4] new    sgd_seed1  (optimizer=sgd seed=1)",
        "[3/4] new    sam_rho0.2_seed0  (optimizer=sam rho=0.2 seed=0)",
        "[4/4] new    sam_rho0.2_seed1  (optimizer=sam rho=0.2 seed=1)",
    ]
    assert not (tmp_path / "runs").exists()  # planning writes nothing


def test_rerun_skips_finished_runs_and_resumes_interrupted_ones(tmp_path: Path):
    root = tmp_path / "runs"
    base = _base(epochs=2)
    points = plan_sweep(["sgd", "sam-magnitude"], [0], decompositions=["elementwise"], rhos=[0.2])
    # interrupt the SAM-magnitude run after its first epoch
    interrupted = points[1]

    def stop(epoch: int, metrics: dict) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(interrupted.config(base), root / interrupted.name, quiet=True, on_epoch=stop)
    assert not (root / interrupted.name / "summary.json").exists()

    lines: list[str] = []
    first = run_sweep(root, base, points, log=lines.append)
    assert [p.status for p in first.planned] == ["new", "resume"]
    assert sorted(first.trained) == sorted(p.name for p in points) and not first.failed
    assert lines[1].startswith("[2/2] sam-magnitude_elementwise_rho0.2_seed0: resumed and finished in")
    saved = json.loads((root / interrupted.name / "config.json").read_text())
    assert saved["rho"] == 0.2 and saved["optimizer_kwargs"]["decomposition"] == "elementwise"

    # the resumed run equals an uninterrupted one
    straight = train(interrupted.config(base), tmp_path / "straight", quiet=True)
    a = torch.load(root / interrupted.name / "final.pt", weights_only=True)
    b = torch.load(straight.final_checkpoint, weights_only=True)
    for key, tensor in b["state_dict"].items():
        assert torch.equal(a["state_dict"][key], tensor), key

    stamp = (root / "sgd_seed0" / "final.pt").stat().st_mtime_ns
    lines.clear()
    second = run_sweep(root, base, points, log=lines.append)
    assert second.trained == {} and second.skipped == [p.name for p in points]
    assert lines == [
        "[1/2] sgd_seed0: finished earlier, skipped",
        "[2/2] sam-magnitude_elementwise_rho0.2_seed0: finished earlier, skipped",
    ]
    assert (root / "sgd_seed0" / "final.pt").stat().st_mtime_ns == stamp


def test_folder_with_other_settings_stops_the_sweep_before_any_run(tmp_path: Path):
    root = tmp_path / "runs"
    points = plan_sweep(["sgd"], [0, 1])
    run_sweep(root, _base(), points[:1], log=lambda _: None)
    changed = _base()
    changed.lr = 0.05
    with pytest.raises(ResultFileError, match=r"sgd_seed0' holds a run with other settings \(lr differ\)"):
        run_sweep(root, changed, points, log=lambda _: None)
    assert not (root / "sgd_seed1").exists()


def test_failed_run_is_reported_and_the_others_still_run(tmp_path: Path):
    base = _base()
    base.batch_size = 1000  # more than the 64 examples: train refuses it
    result = run_sweep(tmp_path / "runs", base, [SweepPoint("sgd", None, None, 0)], log=lambda _: None)
    assert (
        list(result.failed) == ["sgd_seed0"] and "fewer than one step's batch" in result.failed["sgd_seed0"]
    )


def test_bad_jobs_is_refused():
    with pytest.raises(ConfigError, match="jobs=0"):
        run_sweep("unused", _base(), [], jobs=0)


def test_callers_may_name_the_folders_but_each_once(tmp_path: Path):
    points = plan_sweep(["sgd"], [0, 1])
    planned = plan_runs(tmp_path, _base(), points, names=["a", "b"])
    assert [p.out_dir for p in planned] == [tmp_path / "a", tmp_path / "b"] and planned[1].name == "b"
    with pytest.raises(ConfigError, match="one distinct folder name per point"):
        plan_runs(tmp_path, _base(), points, names=["a", "a"])


@pytest.mark.slow
def test_a_worker_process_gets_every_setting_and_resumes(tmp_path: Path):
    """``jobs > 1``: the worker gets the whole ``TrainConfig``, so a setting ``landscape train`` has no
    flag for (``eval_batch_size``, a data seed apart from the training seed) reaches the run, and an
    interrupted run is resumed by the worker."""
    root = tmp_path / "runs"
    base = _base(epochs=2)
    base.eval_batch_size = 48
    point = SweepPoint("sam", None, 0.1, 3)
    config = point.config(base)
    config.data.seed = 11
    config.validate()

    def stop(epoch: int, metrics: dict) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config, root / point.name, quiet=True, on_epoch=stop)
    run = PlannedRun(point, config, root / point.name, "resume")
    seconds, metrics, error = _train_process(run, 1, "cpu", torch.float32)
    assert error is None and 0.0 <= metrics["test_accuracy"] <= 1.0
    saved = json.loads((root / point.name / "config.json").read_text())
    assert saved["eval_batch_size"] == 48 and saved["data"]["seed"] == 11 and saved["rho"] == 0.1
    straight = train(config, tmp_path / "straight", quiet=True)
    a = torch.load(root / point.name / "final.pt", weights_only=True)
    b = torch.load(straight.final_checkpoint, weights_only=True)
    assert all(torch.equal(a["state_dict"][k], t) for k, t in b["state_dict"].items())


@pytest.mark.slow
def test_a_worker_failure_is_its_one_line_message(tmp_path: Path):
    base = _base()
    base.batch_size = 1000  # more than the 64 examples: train refuses it
    result = run_sweep(tmp_path / "runs", base, plan_sweep(["sgd"], [0]), jobs=2, log=lambda _: None)
    assert list(result.failed) == ["sgd_seed0"] and not result.trained
    assert "fewer than one step's batch" in result.failed["sgd_seed0"]


def test_settings_that_are_not_json_are_refused_before_any_process(tmp_path: Path):
    base = _base()
    base.optimizer_kwargs = {"base_optimizer": torch.optim.Adam}
    with pytest.raises(ConfigError, match="cannot go to a separate training process; use jobs=1"):
        run_sweep(tmp_path / "runs", base, plan_sweep(["sam"], [0, 1]), jobs=2, log=lambda _: None)
    assert not (tmp_path / "runs").exists()


def test_a_sweep_process_gets_every_recipe_and_tracking_setting(tmp_path: Path):
    """``landscape sweep --jobs N`` hands each process its whole TrainConfig (the worker's job): the same
    config.json. Moved here from tests/training/test_train_recipes.py, where it drove ``_train_argv``."""
    base = TrainConfig(
        model=ModelSpec("mlp", {"hidden": [8], "activation": "tanh"}),
        data=DataSpec("digits", split="train", subset=64),
        batch_size=16,
        epochs=2,
        schedule="cosine",
        warmup_epochs=0.5,
        label_smoothing=0.1,
        augment=True,
        eval_every=2,
        track_sharpness=3,
        track_top_k=2,
        track_samples=32,
        track_overlap=True,
    )
    (planned,) = plan_runs(tmp_path, base, plan_sweep(["sgd"], [4]))
    run_job(json.loads(job_document(planned.config, planned.out_dir, device="cpu", dtype=torch.float32)))
    (replanned,) = plan_runs(tmp_path, base, [planned.point])
    assert replanned.status == "done"  # the saved config.json is the planned one
    saved = json.loads((planned.out_dir / "config.json").read_text())
    assert saved["augment"] is True and saved["track_overlap"] is True and saved["track_samples"] == 32
