"""``landscape train``: run folders, exact resume, refusal of a folder with other settings."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from click.testing import CliRunner

from landscape.cli.main import cli
from landscape.data.datasets import DataSpec, load_dataset
from landscape.errors import ConfigError, DataError, ModelError, NoSplitError, ResultFileError
from landscape.io.result_folder import SettingsMismatchError
from landscape.models.builders import ModelSpec
from landscape.models.checkpoints import load_checkpoint, load_model
from landscape.objective.core import Evaluation, Objective
from landscape.training import TrainConfig, train

TINY = {"model": ModelSpec("cnn", {"width": 2}), "data": DataSpec("digits", subset=32, seed=1)}


def _tiny(optimizer: str = "sgd", **kw) -> TrainConfig:
    """One epoch of two steps: for tests about the run folder, not about training."""
    return TrainConfig(optimizer=optimizer, **{**TINY, "batch_size": 16, "epochs": 1, **kw})


def _config(optimizer: str = "sam", **kw) -> TrainConfig:
    settings = {"batch_size": 32, "epochs": 3, "seed": 7, **kw}
    return TrainConfig(
        model=ModelSpec("cnn", {"width": 4}),
        data=DataSpec("digits", subset=192, seed=1),
        optimizer=optimizer,
        **settings,
    )


class _StopError(Exception):
    pass


@pytest.mark.parametrize("optimizer", ["sam", "sgd-hess", "minmin", "adamw-msam-sf"])
def test_interrupted_run_resumes_to_the_identical_result(tmp_path, optimizer):
    kw = (
        {"optimizer_kwargs": {"small_batch_size": 16, "large_batch_size": 48}}
        if optimizer == "minmin"
        else {}
    )
    full = train(_config(optimizer, **kw), tmp_path / "full", quiet=True)

    def stop_after_first(epoch, metrics):
        if epoch == 1:
            raise _StopError

    with pytest.raises(_StopError):
        train(_config(optimizer, **kw), tmp_path / "cut", quiet=True, on_epoch=stop_after_first)
    assert not (tmp_path / "cut" / "final.pt").exists()
    resumed = train(_config(optimizer, **kw), tmp_path / "cut", quiet=True)
    assert resumed.resumed_from_epoch == 1 and resumed.steps_done == full.steps_done
    a = load_checkpoint(full.final_checkpoint).state_dict
    b = load_checkpoint(resumed.final_checkpoint).state_dict
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert (tmp_path / "full" / "steps.csv").read_text() == (tmp_path / "cut" / "steps.csv").read_text()
    assert (tmp_path / "full" / "metrics.csv").read_text() == (tmp_path / "cut" / "metrics.csv").read_text()


def test_a_crash_between_the_logs_and_the_resume_state_replays_the_epoch_once(tmp_path):
    """The logs of epoch 2 were written but its resume state was not: the rerun replays epoch 2 and
    logs it once."""
    full = train(_tiny(epochs=2), tmp_path / "full", quiet=True)

    def stop_after_first(epoch, metrics):
        if epoch == 1:
            raise _StopError

    with pytest.raises(_StopError):
        train(_tiny(epochs=2), tmp_path / "cut", quiet=True, on_epoch=stop_after_first)
    for name in ("steps.csv", "metrics.csv"):  # as if the crash came right after writing them
        (tmp_path / "cut" / name).write_bytes((full.out_dir / name).read_bytes())
    resumed = train(_tiny(epochs=2), tmp_path / "cut", quiet=True)
    assert resumed.resumed_from_epoch == 1
    for name in ("steps.csv", "metrics.csv"):
        assert (tmp_path / "cut" / name).read_text() == (full.out_dir / name).read_text(), name


def test_run_folder_contents_and_logged_statistics(tmp_path):
    res = train(_config("sam-magnitude"), tmp_path / "run", quiet=True)
    files = sorted(p.name for p in (tmp_path / "run").iterdir())
    ckpts = sorted(p.name for p in (tmp_path / "run" / "ckpts").iterdir())
    assert ckpts == ["epoch_000.pt", "epoch_001.pt", "epoch_002.pt", "epoch_003.pt"]
    assert files == [
        "ckpts",
        "config.json",
        "final.pt",
        "metrics.csv",
        "state.pt",
        "steps.csv",
        "summary.json",
    ]
    with open(tmp_path / "run" / "steps.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == res.steps_done == 3 * (192 // 32)
    for r in rows:
        assert 0.0 <= float(r["frac_larger"]) <= 1.0
        assert -1.0 <= float(r["cosine"]) <= 1.0 + 1e-9
        assert float(r["grad_norm_ratio"]) > 0
    with open(tmp_path / "run" / "metrics.csv") as fh:
        epochs = list(csv.DictReader(fh))
    assert [int(e["epoch"]) for e in epochs] == [0, 1, 2, 3]
    assert float(epochs[-1]["train_loss"]) < float(epochs[0]["train_loss"])
    ckpt = load_checkpoint(res.final_checkpoint)
    assert ckpt.model_spec.kwargs == {"width": 4, "in_channels": 1, "num_classes": 10}
    assert ckpt.optimizer["name"] == "sam-magnitude" and ckpt.extra["seed"] == 7
    assert ckpt.metrics["train_loss"] == pytest.approx(float(epochs[-1]["train_loss"]))


def test_other_settings_are_refused_unless_overwrite(tmp_path):
    train(_config("sgd", epochs=1), tmp_path / "run", quiet=True)
    with pytest.raises(ResultFileError, match=r"other settings \(lr differ\)") as info:
        train(_config("sgd", epochs=1, lr=0.2), tmp_path / "run", quiet=True)
    # the one result-folder guard's error: where and what, for a caller to reword
    assert isinstance(info.value, SettingsMismatchError)
    assert info.value.path == tmp_path / "run" and info.value.differences == ["lr"]
    res = train(_config("sgd", epochs=1, lr=0.2), tmp_path / "run", quiet=True, overwrite=True)
    assert res.resumed_from_epoch == 0
    assert json.loads((tmp_path / "run" / "config.json").read_text())["lr"] == 0.2


def test_damaged_resume_state_is_a_clear_error(tmp_path):
    train(_config("sgd", epochs=1), tmp_path / "run", quiet=True)
    (tmp_path / "run" / "state.pt").write_bytes(b"garbage")
    with pytest.raises(ResultFileError, match="cannot resume from .*overwrite=True"):
        train(_config("sgd", epochs=1), tmp_path / "run", quiet=True)


def test_bad_settings():
    with pytest.raises(ConfigError, match="^optimizer='adagrad' is not valid"):
        _config("adagrad").validate()
    with pytest.raises(ConfigError, match=r"^momentum=1\.0"):
        _config("sgd", momentum=1.0).validate()


def test_cli_train_then_info(tmp_path):
    runner = CliRunner()
    r = runner.invoke(
        cli,
        [
            "train",
            "--optimizer",
            "sam-direction",
            "--decomposition",
            "elementwise",
            "--epochs",
            "1",
            "--samples",
            "96",
            "--batch-size",
            "32",
            "--model-kwargs",
            '{"width": 4}',
            "-o",
            str(tmp_path / "r"),
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["epochs"] == 1 and out["steps"] == 3
    assert load_checkpoint(tmp_path / "r" / "final.pt").optimizer["hparams"]["decomposition"] == "elementwise"
    bad = runner.invoke(cli, ["train", "--optimizer", "sam", "--lr", "-1", "-o", str(tmp_path / "x")])
    assert bad.exit_code == 1 and bad.output.strip() == "error: --lr=-1.0 must be > 0"


# -- batch norm: evaluation never changes the model ------------------------------------------------
BN_TRAIN_DATA = DataSpec("digits", subset=96, seed=1)


def _bn_config(**kw) -> TrainConfig:
    """The registry's CNN has batch norm after every convolution."""
    settings = {"optimizer": "sgd", "lr": 0.1, "batch_size": 16, "epochs": 2, "seed": 3, **kw}
    return TrainConfig(model=ModelSpec("cnn", {"width": 4}), data=BN_TRAIN_DATA, **settings)


def _fresh_eval(path, spec: DataSpec) -> Evaluation:
    """Eval-mode loss and accuracy of a checkpoint, rebuilt from the file alone."""
    net, _ = load_model(path)
    return Objective(net, load_dataset(spec), batch_size=40, dtype=torch.float64).evaluate()


def test_logged_metrics_equal_an_eval_mode_evaluation_of_the_saved_checkpoints(tmp_path):
    run = tmp_path / "run"
    train(_bn_config(), run, dtype=torch.float64, quiet=True)
    with open(run / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    test_spec = DataSpec("digits", split="test")
    for r in rows:
        path = run / "ckpts" / f"epoch_{int(r['epoch']):03d}.pt"
        fresh = {"train": _fresh_eval(path, BN_TRAIN_DATA), "test": _fresh_eval(path, test_spec)}
        saved = load_checkpoint(path).metrics
        for split, ev in fresh.items():
            for name, value in (("loss", ev.loss), ("accuracy", ev.accuracy)):
                key = f"{split}_{name}"
                assert float(r[key]) == pytest.approx(value, abs=1e-6), (path.name, key)
                assert saved[key] == pytest.approx(value, abs=1e-6), (path.name, key)
    final = json.loads((run / "summary.json").read_text())["final"]
    last = run / "ckpts" / "epoch_002.pt"
    for split, spec in (("train", BN_TRAIN_DATA), ("test", test_spec)):
        ev = _fresh_eval(run / "final.pt", spec)
        assert final[f"{split}_loss"] == pytest.approx(ev.loss, abs=1e-6)
        assert final[f"{split}_accuracy"] == pytest.approx(ev.accuracy, abs=1e-6)
        assert load_checkpoint(run / "final.pt").metrics[f"{split}_loss"] == pytest.approx(ev.loss, abs=1e-6)
        assert _fresh_eval(last, spec).loss == ev.loss


def test_checkpoint_buffers_are_bit_identical_with_and_without_the_evaluation(tmp_path, monkeypatch):
    evaluated = train(_bn_config(), tmp_path / "evaluated", dtype=torch.float64, quiet=True)

    def no_evaluation(self: Objective) -> Evaluation:
        return Evaluation(loss=float("nan"), accuracy=float("nan"), num_samples=self.num_samples)

    monkeypatch.setattr(Objective, "evaluate", no_evaluation)
    skipped = train(_bn_config(), tmp_path / "skipped", dtype=torch.float64, quiet=True)
    names = ["epoch_000.pt", "epoch_001.pt", "epoch_002.pt"]
    pairs = [(evaluated.out_dir / "ckpts" / n, skipped.out_dir / "ckpts" / n) for n in names]
    pairs.append((evaluated.final_checkpoint, skipped.final_checkpoint))
    for a_path, b_path in pairs:
        a, b = load_checkpoint(a_path).state_dict, load_checkpoint(b_path).state_dict
        assert any("running_var" in k for k in a)
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), (a_path.name, k)
    state_a = torch.load(tmp_path / "evaluated" / "state.pt", weights_only=True)["model"]
    state_b = torch.load(tmp_path / "skipped" / "state.pt", weights_only=True)["model"]
    for k in state_a:
        assert torch.equal(state_a[k], state_b[k]), ("state.pt", k)


# -- resolved hyperparameters ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("optimizer", "kw", "rho", "options"),
    [
        pytest.param("sam", {}, 0.05, {}, id="sam-default-rho"),
        pytest.param("asam", {}, 0.5, {}, id="asam-default-rho"),
        pytest.param("sam", {"rho": 0.2}, 0.2, {}, id="sam-given-rho"),
        pytest.param("sam-direction", {}, 0.05, {"decomposition": "global"}, id="sam-direction"),
        pytest.param("sgd-hess", {}, 0.05, {"hessian_period": 1, "seed": 5}, id="sgd-hess-seed"),
        pytest.param("sgd", {"rho": 0.3}, None, {}, id="sgd-ignores-rho"),
    ],
)
def test_config_and_checkpoint_record_the_resolved_hyperparameters(tmp_path, optimizer, kw, rho, options):
    res = train(_tiny(optimizer, seed=5, **kw), tmp_path / "run", quiet=True)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["rho"] == rho
    assert saved["optimizer_kwargs"] == options
    hparams = load_checkpoint(res.final_checkpoint).optimizer["hparams"]
    assert hparams.get("rho") == rho
    assert {k: hparams[k] for k in options} == options


def test_a_rerun_with_the_same_resolved_settings_is_the_same_run(tmp_path):
    out = tmp_path / "run"
    train(_tiny("sam"), out, quiet=True)
    again = train(_tiny("sam"), out, quiet=True)  # the same command
    assert again.resumed_from_epoch == 1
    explicit = train(_tiny("sam", rho=0.05), out, quiet=True)  # the default radius, typed out
    assert explicit.resumed_from_epoch == 1
    # a folder written before resolved values were recorded resumes too
    old = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**old, "rho": None, "optimizer_kwargs": {}}))
    assert train(_tiny("sam"), out, quiet=True).resumed_from_epoch == 1
    assert json.loads((out / "config.json").read_text())["rho"] == 0.05
    with pytest.raises(ResultFileError, match=r"other settings \(rho differ\)"):
        train(_tiny("sam", rho=0.1), out, quiet=True)


# -- a command that fails validation leaves nothing behind ----------------------------------------
def _empty_tensor_file(tmp_path):
    path = tmp_path / "empty.pt"
    torch.save({"x": torch.zeros(0, 1, 8, 8), "y": torch.zeros(0, dtype=torch.int64)}, path)
    return str(path)


@pytest.mark.parametrize(
    ("bad", "error", "match"),
    [
        pytest.param({"model": ModelSpec("cnn", {"widht": 2})}, "ModelError", "widht", id="model-kwargs"),
        pytest.param(
            {"optimizer_kwargs": {"nesterov": True}}, "ConfigError", "^optimizer_kwargs=", id="opt-kwargs"
        ),
        pytest.param({"rho": -0.05}, "ConfigError", "^rho=-0.05", id="negative-rho"),
        pytest.param({"data": DataSpec("digits", subset=1)}, "ConfigError", "1 example", id="one-sample"),
        pytest.param({"device": "cuda"}, "ConfigError", "CUDA", id="device-cuda"),
        pytest.param({"data": "EMPTY"}, "DataError", "no training examples", id="empty-data"),
        pytest.param({"eval_batch_size": 0}, "ConfigError", "eval_batch_size=0", id="eval-batch-size"),
    ],
)
def test_failed_validation_leaves_nothing_and_the_corrected_command_runs(
    tmp_path, monkeypatch, bad, error, match
):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    bad = dict(bad)
    device = bad.pop("device", "cpu")
    if bad.get("data") == "EMPTY":
        bad["data"] = DataSpec(_empty_tensor_file(tmp_path))
    optimizer = "msam" if "optimizer_kwargs" in bad else "sam"
    out = tmp_path / "run"
    with pytest.raises((ConfigError, DataError, ModelError), match=match) as info:
        train(_tiny(optimizer, **bad), out, device=device, quiet=True)
    assert type(info.value).__name__ == error
    assert not out.exists()
    res = train(_tiny(optimizer), out, device="cpu", quiet=True)
    assert res.epochs_done == 1 and res.resumed_from_epoch == 0


def test_failed_validation_leaves_an_existing_run_untouched(tmp_path):
    out = tmp_path / "run"
    train(_tiny("sam"), out, quiet=True)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    with pytest.raises(ConfigError, match="^rho=-0.05"):
        train(_tiny("sam", rho=-0.05), out, quiet=True, overwrite=True)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


# -- the test split ---------------------------------------------------------------------------------
def test_a_tensor_file_has_no_test_split(tmp_path):
    x, y = load_dataset(DataSpec("digits", subset=32, seed=1)).tensors
    path = tmp_path / "data.pt"
    torch.save({"x": x, "y": y}, path)
    res = train(_tiny(data=DataSpec(str(path))), tmp_path / "run", quiet=True)
    assert res.final_metrics["train_loss"] > 0
    assert res.final_metrics["test_loss"] != res.final_metrics["test_loss"]  # NaN, not the training data


def test_only_a_missing_test_split_is_tolerated(tmp_path, monkeypatch):
    import landscape.training.batches as batches_module

    real = batches_module.load_dataset

    def one_split(spec):
        if spec.split == "test":
            raise NoSplitError("dataset factory 'pkg:f' takes no 'split' parameter")
        return real(spec)

    monkeypatch.setattr(batches_module, "load_dataset", one_split)
    res = train(_tiny(), tmp_path / "one", quiet=True)
    assert res.final_metrics["test_accuracy"] != res.final_metrics["test_accuracy"]

    def broken(spec):
        if spec.split == "test":
            raise DataError("cifar10: missing file '/data/test_batch'")
        return real(spec)

    monkeypatch.setattr(batches_module, "load_dataset", broken)
    with pytest.raises(DataError, match="test_batch"):
        train(_tiny(), tmp_path / "broken", quiet=True)
    assert not (tmp_path / "broken").exists()


# -- the caller's config, hooks --------------------------------------------------------------------
def test_train_leaves_the_callers_config_as_given(tmp_path):
    import copy

    config = _tiny("sgd-hess", seed=4)
    given = copy.deepcopy(config)
    train(config, tmp_path / "run", quiet=True)
    assert config == given  # rho, options and model sizes were resolved in a copy
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["rho"] == 0.05 and saved["optimizer_kwargs"] == {"hessian_period": 1, "seed": 4}
    assert saved["model"]["kwargs"] == {"width": 2, "in_channels": 1, "num_classes": 10}


def test_step_and_epoch_hooks_see_each_logged_row(tmp_path):
    steps, epochs = [], []
    res = train(
        _tiny("sam", epochs=2),
        tmp_path / "run",
        quiet=True,
        step_hooks=[lambda s: steps.append((s.epoch, s.step, s.loss, dict(s.row), s.optimizer))],
        epoch_hooks=[lambda e: epochs.append((e.epoch, e.step, dict(e.metrics), e.folder.path))],
    )
    with open(tmp_path / "run" / "steps.csv") as fh:
        logged = list(csv.DictReader(fh))
    assert len(steps) == len(logged) == res.steps_done == 4
    for (epoch, step, loss, row, optimizer), line in zip(steps, logged):
        assert (epoch, step) == (int(line["epoch"]), int(line["step"])) == (row["epoch"], row["step"])
        assert loss == row["loss"] == float(line["loss"])
        assert float(line["frac_larger"]) == row["frac_larger"]
        assert optimizer.__class__.__name__ == "SAM"
    with open(tmp_path / "run" / "metrics.csv") as fh:
        metrics = list(csv.DictReader(fh))[1:]  # epoch 0 is the initialization, before any hook
    assert [(e, s) for e, s, _, _ in epochs] == [(1, 2), (2, 4)]
    for (_, _, m, path), line in zip(epochs, metrics):
        assert m["train_loss"] == float(line["train_loss"]) and path == tmp_path / "run"


def test_cli_names_flags_where_the_library_names_parameters():
    from landscape.cli.train import to_flags

    cases = {
        "the loss became nan at epoch 1, step 3; lower lr (now 0.05) or rho": (
            "the loss became nan at epoch 1, step 3; lower --lr (now 0.05) or --rho"
        ),
        "'/runs/lr' holds a run with other settings (lr differ); use another out_dir or pass overwrite=True": (
            "'/runs/lr' holds a run with other settings (lr differ); use another -o/--out or pass --overwrite"
        ),
        "out_dir='/x' exists and is not a directory": "-o/--out '/x' exists and is not a directory",
        "device='tpu' is not valid": "--device='tpu' is not valid",
        "--device='tpu' is not valid": "--device='tpu' is not valid",
        "optimizer='adagrad' is not valid; choose one of 'sgd'": "--optimizer adagrad is not valid; choose one of 'sgd'",
        "small_batch_size=0 must be an integer >= 1": "small_batch_size=0 must be an integer >= 1",
    }
    for message, expected in cases.items():
        assert to_flags(message) == expected


def test_the_divergence_rule():
    from landscape.training.loop import DIVERGENCE_FACTOR, diverged_message

    def rows(*losses: float) -> list[dict[str, float]]:
        return [{"train_loss": v} for v in losses]

    assert diverged_message(rows(2.0, 0.5)) is None
    assert diverged_message(rows(2.0, DIVERGENCE_FACTOR * 2.0)) is None  # at the bound: not above it
    assert "more than 10x" in diverged_message(rows(2.0, DIVERGENCE_FACTOR * 2.0 * 1.001))
    assert "nan" in diverged_message(rows(2.0, float("nan")))
    assert "inf" in diverged_message(rows(2.0, float("inf")))
    assert diverged_message(rows(float("nan"), float("nan"))) is None  # nothing to compare with
    assert diverged_message(rows(2.0)) is None  # epoch 0 only
