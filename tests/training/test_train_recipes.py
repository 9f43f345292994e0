"""``landscape train`` recipes: schedules, label smoothing, augmentation, eval_every, --loss, gd."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from click.testing import CliRunner

from landscape.cli.main import cli
from landscape.data.datasets import DataSpec, load_dataset
from landscape.errors import ConfigError
from landscape.models.builders import ModelSpec, build_model
from landscape.models.checkpoints import load_checkpoint, load_model
from landscape.training import TrainConfig, checkpoint_loss, train
from landscape.training.batches import SeededBatches
from landscape.training.recipes import lr_multiplier, make_loss

MLP = ModelSpec("mlp", {"hidden": [8], "activation": "tanh"})
DIGITS = DataSpec("digits", subset=64, seed=3)


def _config(**kw) -> TrainConfig:
    """An MLP on 64 digits, 4 steps of 16 per epoch: a second or less per run."""
    settings = {"batch_size": 16, "epochs": 3, "seed": 3, "lr": 0.1, **kw}
    return TrainConfig(model=MLP, data=DIGITS, **settings)


def _rows(path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


class _StopError(Exception):
    pass


@pytest.mark.parametrize(
    "schedule,warmup_epochs",
    [("cosine", 0.5), ("step", 0.0), ("constant", 1.0)],
    ids=["cosine", "step", "warmup"],
)
def test_logged_lr_of_every_step_is_the_schedule_times_lr(tmp_path, schedule, warmup_epochs):
    cfg = _config(schedule=schedule, warmup_epochs=warmup_epochs)
    res = train(cfg, tmp_path / "run", quiet=True)
    rows = _rows(tmp_path / "run" / "steps.csv")
    total, warmup = 3 * 4, int(warmup_epochs * 4)
    assert len(rows) == res.steps_done == total
    expected = [0.1 * lr_multiplier(schedule, t, total, warmup) for t in range(total)]
    assert [float(r["lr"]) for r in rows] == pytest.approx(expected, rel=1e-12, abs=0)
    assert len(set(expected)) > 1  # the schedule really changes the rate
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["schedule"] == schedule and saved["warmup_epochs"] == warmup_epochs
    assert saved["data_order"].startswith("epoch e: torch.randperm")


def test_the_step_is_taken_with_the_logged_lr(tmp_path):
    """Plain SGD without momentum or decay: w_1 = w_0 - lr_0 g(w_0) on the first batch (lr_0 = lr / W)."""
    cfg = _config(schedule="cosine", warmup_epochs=1.0, momentum=0.0, weight_decay=0.0, epochs=2)
    seen = {}

    def first_step(end):
        if end.step == 1:
            seen.update({n: p.detach().clone() for n, p in end.model.named_parameters()})

    train(cfg, tmp_path / "run", quiet=True, dtype=torch.float64, step_hooks=[first_step])
    model0 = load_model(tmp_path / "run" / "ckpts" / "epoch_000.pt")[0].double()
    batches = SeededBatches(load_dataset(DIGITS), torch.device("cpu"), torch.float64)
    x, y = batches.take(batches.order(3, 1)[:16])
    torch.nn.functional.cross_entropy(model0(x), y).backward()
    lr0 = float(_rows(tmp_path / "run" / "steps.csv")[0]["lr"])
    assert lr0 == pytest.approx(0.1 / 4, rel=1e-12)
    for n, p in model0.named_parameters():
        torch.testing.assert_close(seen[n], p.detach() - lr0 * p.grad, rtol=1e-12, atol=1e-14)


def test_resume_with_cosine_and_augment_is_bit_identical(tmp_path):
    cfg = TrainConfig(
        model=ModelSpec("cnn", {"width": 2}),
        data=DIGITS,
        batch_size=16,
        epochs=3,
        seed=5,
        schedule="cosine",
        warmup_epochs=0.5,
        augment=True,
    )
    full = train(cfg, tmp_path / "full", quiet=True)

    def stop_after_first(epoch, metrics):
        if epoch == 1:
            raise _StopError

    with pytest.raises(_StopError):
        train(cfg, tmp_path / "cut", quiet=True, on_epoch=stop_after_first)
    state = torch.load(tmp_path / "cut" / "state.pt", weights_only=True)
    assert state["extra"]["scheduler"]["last_epoch"] == 4
    resumed = train(cfg, tmp_path / "cut", quiet=True)
    assert resumed.resumed_from_epoch == 1
    a = load_checkpoint(full.final_checkpoint).state_dict
    b = load_checkpoint(resumed.final_checkpoint).state_dict
    assert all(torch.equal(a[k], b[k]) for k in a)
    for name in ("steps.csv", "metrics.csv"):
        assert (tmp_path / "full" / name).read_text() == (tmp_path / "cut" / name).read_text(), name
    # the augmentation is really applied: without it the same run takes other steps
    plain = train(TrainConfig(**{**cfg.__dict__, "augment": False}), tmp_path / "plain", quiet=True)
    c = load_checkpoint(plain.final_checkpoint).state_dict
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_augment_refuses_non_image_data(tmp_path):
    x, y = torch.randn(32, 5), torch.randint(0, 3, (32,))
    torch.save({"x": x, "y": y}, tmp_path / "flat.pt")
    cfg = TrainConfig(
        model=ModelSpec("mlp", {"hidden": [4]}),
        data=DataSpec(str(tmp_path / "flat.pt")),
        augment=True,
        epochs=1,
    )
    with pytest.raises(
        ConfigError, match=r"^augment=True needs image data .*shaped \(5,\); turn augment off"
    ):
        train(cfg, tmp_path / "run", quiet=True)
    assert not (tmp_path / "run").exists()
    r = CliRunner().invoke(
        cli,
        [
            "train",
            "--model",
            "mlp",
            "--data",
            str(tmp_path / "flat.pt"),
            "--augment",
            "-o",
            str(tmp_path / "r"),
        ],
    )
    assert r.exit_code != 0 and "Traceback" not in r.output
    assert "--augment needs image data" in r.output and "turn --augment off" in r.output


def test_label_smoothing_trains_on_the_smoothed_loss_and_logs_the_plain_one(tmp_path):
    train(_config(label_smoothing=0.2, epochs=1), tmp_path / "run", quiet=True, dtype=torch.float64)
    model0 = load_model(tmp_path / "run" / "ckpts" / "epoch_000.pt")[0].double().eval()
    batches = SeededBatches(load_dataset(DIGITS), torch.device("cpu"), torch.float64)
    x, y = batches.take(batches.order(3, 1)[:16])
    first = _rows(tmp_path / "run" / "steps.csv")[0]
    with torch.no_grad():
        assert float(first["loss"]) == pytest.approx(float(make_loss(0.2)(model0(x), y)), rel=1e-12)
        xs, ys = batches.take(torch.arange(64))
        plain = float(torch.nn.functional.cross_entropy(model0(xs), ys))
    epoch0 = _rows(tmp_path / "run" / "metrics.csv")[0]
    assert float(epoch0["train_loss"]) == pytest.approx(plain, rel=1e-12)


def test_eval_every_evaluates_every_n_epochs_and_the_last_and_resumes(tmp_path):
    cfg = _config(epochs=5, eval_every=2)
    full = train(cfg, tmp_path / "full", quiet=True)
    assert [int(r["epoch"]) for r in _rows(tmp_path / "full" / "metrics.csv")] == [0, 2, 4, 5]
    assert sorted(p.name for p in (tmp_path / "full" / "ckpts").iterdir()) == [
        "epoch_000.pt",
        "epoch_002.pt",
        "epoch_004.pt",
        "epoch_005.pt",
    ]
    assert len(_rows(tmp_path / "full" / "steps.csv")) == 5 * 4
    seen = []

    def stop_at_two(epoch, metrics):
        seen.append(epoch)
        if epoch == 2:
            raise _StopError

    with pytest.raises(_StopError):
        train(cfg, tmp_path / "cut", quiet=True, on_epoch=stop_at_two)
    assert seen == [2]
    resumed = train(cfg, tmp_path / "cut", quiet=True)
    assert resumed.resumed_from_epoch == 2
    a = load_checkpoint(full.final_checkpoint).state_dict
    b = load_checkpoint(resumed.final_checkpoint).state_dict
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "full" / "steps.csv").read_text() == (tmp_path / "cut" / "steps.csv").read_text()


def test_gd_equals_one_big_batch(tmp_path):
    """gd with batch_size 16 accumulates 4 pieces of 64 examples: the same steps as one batch of 64."""
    cfg = _config(optimizer="gd", momentum=0.9, weight_decay=1e-3, epochs=4, lr=0.5)
    res = train(cfg, tmp_path / "run", quiet=True, dtype=torch.float64)
    assert res.steps_done == 4  # one step per epoch
    torch.manual_seed(3)
    model = build_model(load_checkpoint(res.final_checkpoint).model_spec).double()
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-3)
    ds = load_dataset(DIGITS)
    x, y = ds.tensors[0].double(), ds.tensors[1]
    losses = []
    for _ in range(4):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    final = load_checkpoint(res.final_checkpoint).state_dict
    for n, p in model.state_dict().items():
        torch.testing.assert_close(final[n], p, rtol=1e-11, atol=1e-13)
    logged = [float(r["loss"]) for r in _rows(tmp_path / "run" / "steps.csv")]
    assert logged == pytest.approx(losses, rel=1e-11)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["optimizer"] == "gd" and saved["data_order"].startswith("full batch")


def test_gd_refuses_augment():
    with pytest.raises(ConfigError, match=r"^augment=True does not fit optimizer='gd'"):
        _config(optimizer="gd", augment=True).validate()


def test_mse_training_logs_the_half_squared_error_of_the_saved_checkpoint(tmp_path):
    r = CliRunner().invoke(
        cli,
        [
            "train",
            "--model",
            "mlp",
            "--model-kwargs",
            '{"hidden": [8]}',
            "--samples",
            "64",
            "--seed",
            "3",
            "--loss",
            "mse",
            "--batch-size",
            "16",
            "--epochs",
            "2",
            "-q",
            "-o",
            str(tmp_path / "run"),
        ],
    )
    assert r.exit_code == 0, r.output
    ckpt = load_checkpoint(tmp_path / "run" / "final.pt")
    assert checkpoint_loss(ckpt) == "mse" and ckpt.extra["loss"] == "mse"
    assert checkpoint_loss(torch.load(tmp_path / "run" / "final.pt", weights_only=True)) == "mse"
    assert json.loads((tmp_path / "run" / "config.json").read_text())["loss"] == "mse"
    model = load_model(tmp_path / "run" / "final.pt")[0].eval()
    ds = load_dataset(DIGITS)
    with torch.no_grad():
        f = model(ds.tensors[0].float()).double()
    onehot = torch.zeros_like(f)
    onehot[torch.arange(len(f)), ds.tensors[1]] = 1.0
    by_hand = float((0.5 * ((f - onehot) ** 2).sum(dim=1)).mean())
    last = _rows(tmp_path / "run" / "metrics.csv")[-1]
    assert float(last["train_loss"]) == pytest.approx(by_hand, rel=1e-5)
    assert ckpt.metrics["train_loss"] == pytest.approx(by_hand, rel=1e-5)


def test_checkpoint_loss_of_a_checkpoint_without_one_is_none(tmp_path):
    assert checkpoint_loss({"extra": {"seed": 0}}) is None
    assert checkpoint_loss({}) is None


@pytest.mark.parametrize(
    "args,message",
    [
        (
            ["--schedule", "cosine", "--warmup-epochs", "3"],
            "--warmup-epochs=3.0 must be smaller than --epochs=3",
        ),
        (
            ["--label-smoothing", "0.1", "--loss", "mse"],
            "--label-smoothing=0.1 applies to --loss cross-entropy",
        ),
        (["--eval-every", "0"], "--eval-every=0 must be an integer >= 1"),
        (["--loss", "hinge"], "--loss hinge is not valid; choose one of cross-entropy, mse"),
        (["--track-sharpness", "0"], "--track-sharpness=0 must be an integer >= 1"),
    ],
    ids=["warmup", "smoothing-mse", "eval-every", "loss", "track"],
)
def test_cli_refuses_bad_recipe_flags_in_one_line(tmp_path, args, message):
    r = CliRunner().invoke(cli, ["train", "--epochs", "3", *args, "-o", str(tmp_path / "run")])
    assert r.exit_code != 0 and "Traceback" not in r.output
    assert message in r.output, r.output
    assert not (tmp_path / "run").exists()


def test_a_run_recorded_before_recipes_existed_still_resumes(tmp_path):
    cfg = _config(epochs=2)

    def stop_after_first(epoch, metrics):
        if epoch == 1:
            raise _StopError

    with pytest.raises(_StopError):
        train(cfg, tmp_path / "run", quiet=True, on_epoch=stop_after_first)
    path = tmp_path / "run" / "config.json"
    old = json.loads(path.read_text())
    for key in (
        "loss",
        "schedule",
        "warmup_epochs",
        "label_smoothing",
        "augment",
        "eval_every",
        "data_order",
    ):
        old.pop(key)
    for key in ("track_sharpness", "track_top_k", "track_samples", "track_overlap"):
        old.pop(key)
    path.write_text(json.dumps(old))
    assert train(cfg, tmp_path / "run", quiet=True).resumed_from_epoch == 1


def test_analysis_commands_use_the_checkpoints_loss_unless_told(tmp_path):
    """``evaluate`` of an mse checkpoint reports its half squared error; ``--loss`` overrides it."""
    run = tmp_path / "run"
    args = ["--model", "mlp", "--model-kwargs", '{"hidden": [8]}', "--samples", "64", "--seed", "3"]
    r = CliRunner().invoke(
        cli, ["train", *args, "--loss", "mse", "--batch-size", "16", "--epochs", "1", "-q", "-o", str(run)]
    )
    assert r.exit_code == 0, r.output
    model = load_model(run / "final.pt")[0].eval()
    x, y = load_dataset(DIGITS).tensors[:2]
    with torch.no_grad():
        f = model(x.float()).double()
    onehot = torch.nn.functional.one_hot(y, f.shape[1]).double()
    mse = float((0.5 * ((f - onehot) ** 2).sum(dim=1)).mean())
    cross_entropy = float(torch.nn.functional.cross_entropy(f, y))
    data = ["--samples", "64", "--seed", "3", "--json"]
    own = CliRunner().invoke(cli, ["evaluate", str(run / "final.pt"), *data])
    told = CliRunner().invoke(cli, ["evaluate", str(run / "final.pt"), *data, "--loss", "cross-entropy"])
    assert own.exit_code == 0 and told.exit_code == 0, own.output + told.output
    assert json.loads(own.output)["loss"] == pytest.approx(mse, rel=1e-5)
    assert json.loads(told.output)["loss"] == pytest.approx(cross_entropy, rel=1e-5)
    bad = CliRunner().invoke(cli, ["evaluate", str(run / "final.pt"), *data, "--loss", "hinge"])
    assert bad.exit_code == 1 and "hinge" in bad.output and "Traceback" not in bad.output
