"""Checkpoint formats: each one round-trips to the same weights; errors are clear."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from landscape.data.datasets import DataSpec
from landscape.errors import CheckpointError
from landscape.models.builders import ModelSpec, build_model
from landscape.models.checkpoints import describe_checkpoint, load_checkpoint, load_model, save_checkpoint


def _same(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _trained_like(model: nn.Module) -> nn.Module:
    # Non-default buffers too, so a round trip that dropped them would be caught.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
        for _name, b in model.named_buffers():
            if b.is_floating_point():
                b.copy_(torch.rand_like(b) + 0.5)
    return model


def test_own_format_round_trip_keeps_metadata(tmp_path):
    model = _trained_like(build_model("cnn", width=4))
    path = save_checkpoint(
        tmp_path / "a.pt",
        model,
        model_spec=ModelSpec("cnn", {"width": 4}),
        data_spec=DataSpec("digits", subset=100, seed=3),
        optimizer={"name": "sam", "hparams": {"lr": 0.1, "rho": 0.05}},
        step=17,
        epoch=2,
        metrics={"train_loss": 0.25},
        extra={"seed": 5},
    )
    loaded, ckpt = load_model(path)
    assert _same(model, loaded)
    assert ckpt.source_format == "landscape"
    assert ckpt.model_spec.to_dict() == {"name": "cnn", "kwargs": {"width": 4}}
    assert ckpt.data_spec.subset == 100 and ckpt.data_spec.seed == 3
    assert ckpt.optimizer["hparams"]["rho"] == 0.05
    assert (ckpt.step, ckpt.epoch, ckpt.metrics, ckpt.extra) == (17, 2, {"train_loss": 0.25}, {"seed": 5})


@pytest.mark.parametrize(
    "wrap",
    [
        pytest.param(lambda sd: sd, id="plain-state-dict"),
        pytest.param(lambda sd: {"module." + k: v for k, v in sd.items()}, id="data-parallel-prefix"),
        pytest.param(lambda sd: {"state_dict": sd, "epoch": 3}, id="dict-with-state_dict"),
        pytest.param(lambda sd: {"model": sd}, id="dict-with-model"),
        pytest.param(
            lambda sd: {
                "state_dict": {"model." + k: v for k, v in sd.items()},
                "pytorch-lightning_version": "2.4.0",
                "global_step": 120,
                "epoch": 4,
            },
            id="lightning-ckpt",
        ),
    ],
)
def test_foreign_dict_formats_round_trip(tmp_path, wrap):
    model = _trained_like(build_model("mlp", hidden=[8]))
    path = tmp_path / "foreign.ckpt"
    torch.save(wrap(model.state_dict()), path)
    with pytest.raises(CheckpointError, match="model='NAME'"):
        load_model(path)
    loaded, ckpt = load_model(path, model="mlp", model_kwargs={"hidden": [8]})
    assert _same(model, loaded)


def test_lightning_metadata_is_read(tmp_path):
    model = build_model("mlp", hidden=[8])
    sd = {"model." + k: v for k, v in model.state_dict().items()}
    torch.save(
        {"state_dict": sd, "pytorch-lightning_version": "2.4", "global_step": 120, "epoch": 4},
        tmp_path / "l.ckpt",
    )
    ckpt = load_checkpoint(tmp_path / "l.ckpt")
    assert (ckpt.source_format, ckpt.step, ckpt.epoch) == ("lightning", 120, 4)


def test_safetensors_round_trip(tmp_path):
    from safetensors.torch import save_file

    model = _trained_like(build_model("cnn", width=4))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "w.safetensors"))
    loaded, ckpt = load_model(tmp_path / "w.safetensors", model="cnn", model_kwargs={"width": 4})
    assert ckpt.source_format == "safetensors"
    assert _same(model, loaded)


def test_users_own_model_plain_state_dict(tmp_path):
    """A user's own architecture, saved with torch.save(model.state_dict()), loads via pkg.mod:factory."""
    model = _trained_like(build_model("mlp", hidden=[5, 7], activation="relu"))
    torch.save(model.state_dict(), tmp_path / "user.pt")
    loaded, _ = load_model(
        tmp_path / "user.pt",
        model="landscape.models.builders:MLP",
        model_kwargs={"hidden": [5, 7], "activation": "relu"},
    )
    assert _same(model, loaded)


def test_wrong_architecture_lists_missing_unexpected_and_shapes(tmp_path):
    torch.save(build_model("mlp", hidden=[8]).state_dict(), tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match=r"wrong shapes: net\.1\.weight \(8, 64\) vs model \(9, 64\)"):
        load_model(tmp_path / "m.pt", model="mlp", model_kwargs={"hidden": [9]})
    with pytest.raises(
        CheckpointError, match=r"missing keys: net\.5\.weight, net\.5\.bias; wrong shapes: net\.3\.weight"
    ) as err:
        load_model(tmp_path / "m.pt", model="mlp", model_kwargs={"hidden": [8, 8]})
    assert "does not fit the model architecture" in str(err.value)
    with pytest.raises(CheckpointError, match=r"unexpected keys: net\.3\.weight, net\.3\.bias"):
        load_model(tmp_path / "m.pt", model="mlp", model_kwargs={"hidden": []})


def test_save_is_atomic_and_leaves_no_temporary_files(tmp_path, monkeypatch):
    model = build_model("mlp", hidden=[4])
    path = save_checkpoint(tmp_path / "c.pt", model, model_spec=ModelSpec("mlp", {"hidden": [4]}))
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, build_model("mlp", hidden=[4]), model_spec=ModelSpec("mlp", {"hidden": [4]}))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]


def test_describe_counts_parameters_by_layer_type_and_buffers(cnn_checkpoint):
    _, ckpt = load_model(cnn_checkpoint)
    desc = describe_checkpoint(ckpt)
    model = build_model("cnn", width=4)
    assert desc["num_parameters"] == sum(p.numel() for p in model.parameters())
    conv = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Conv2d))
    bn = sum(m.weight.numel() + m.bias.numel() for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert desc["parameters_by_layer_type"] == {"Conv2d": conv, "Linear": 8 * 10 + 10, "BatchNorm2d": bn}
    assert desc["buffers"]["running_mean"] == 4 + 8
    assert desc["has_batchnorm_statistics"] is True
    assert desc["data"]["name"] == "digits" and (desc["step"], desc["epoch"]) == (3, 1)


def test_unsafe_pickled_module_needs_opt_in(tmp_path):
    model = _trained_like(build_model("mlp", hidden=[4]))
    torch.save(model, tmp_path / "whole.pt")
    with pytest.raises(CheckpointError, match="unsafe_load=True"):
        load_checkpoint(tmp_path / "whole.pt")
    loaded, ckpt = load_model(tmp_path / "whole.pt", unsafe_load=True)
    assert ckpt.source_format == "pickled-module"
    assert _same(model, loaded)
