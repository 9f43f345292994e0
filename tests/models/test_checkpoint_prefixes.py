"""Checkpoints as people have them (issue 21, items 7 and 8): wrapper prefixes in any order, extra
keys of a wrapper or a Lightning module, timm's EMA weights, a batch norm without its counter."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from landscape.errors import CheckpointError
from landscape.models.checkpoints import describe_checkpoint, load_checkpoint, load_model


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))


def _prefixed(sd: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {prefix + k: v for k, v in sd.items()}


def _same(a: nn.Module, sd: dict[str, torch.Tensor]) -> bool:
    own = a.state_dict()
    return own.keys() == sd.keys() and all(torch.equal(own[k], sd[k]) for k in own)


FACTORY = "tests.models.test_checkpoint_prefixes:_net"


@pytest.mark.parametrize(
    "prefix",
    ["_orig_mod.", "module._orig_mod.", "_orig_mod.module.", "model._orig_mod.", "module.model."],
)
def test_every_chain_of_known_prefixes_is_removed(tmp_path, prefix):
    sd = _net().state_dict()
    torch.save(_prefixed(sd, prefix), tmp_path / "w.pt")
    net, ckpt = load_model(tmp_path / "w.pt", model=FACTORY)
    assert _same(net, sd)
    assert ckpt.removed_prefix == prefix
    assert describe_checkpoint(ckpt)["keys"]["removed_prefix"] == prefix


def test_averaged_model_file_loads_without_its_count(tmp_path):
    base = _net()
    averaged = torch.optim.swa_utils.AveragedModel(base)
    torch.save(averaged.state_dict(), tmp_path / "swa.pt")
    assert "n_averaged" in averaged.state_dict()
    net, ckpt = load_model(tmp_path / "swa.pt", model=FACTORY)
    assert _same(net, base.state_dict())
    assert ckpt.removed_prefix == "module."


def test_lightning_file_with_a_loss_weight_ignores_it_and_says_so(tmp_path):
    sd = _net().state_dict()
    state = {**_prefixed(sd, "model."), "criterion.weight": torch.ones(2)}
    torch.save({"state_dict": state, "pytorch-lightning_version": "2.1.0", "epoch": 4}, tmp_path / "l.ckpt")
    net, ckpt = load_model(tmp_path / "l.ckpt", model=FACTORY)
    assert _same(net, sd)
    assert (ckpt.removed_prefix, ckpt.ignored_keys, ckpt.epoch) == ("model.", ["criterion.weight"], 4)


class _Holder(nn.Module):
    """A model whose own submodule is called ``module`` (or ``model``)."""

    def __init__(self, name: str = "module") -> None:
        super().__init__()
        torch.manual_seed(1)
        setattr(self, name, nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2)))


def _holder_model() -> nn.Module:
    return _Holder("model")


@pytest.mark.parametrize(
    "factory",
    ["tests.models.test_checkpoint_prefixes:_Holder", "tests.models.test_checkpoint_prefixes:_holder_model"],
)
def test_a_models_own_submodule_named_like_a_prefix_is_kept(tmp_path, factory):
    own = (_Holder() if factory.endswith("_Holder") else _holder_model()).state_dict()
    torch.save(own, tmp_path / "h.pt")
    net, ckpt = load_model(tmp_path / "h.pt", model=factory)
    assert _same(net, own)
    assert ckpt.removed_prefix == ""
    # wrapped once more by DataParallel, the outer prefix goes and the model's own name stays
    torch.save(_prefixed(own, "module."), tmp_path / "dp.pt")
    net, ckpt = load_model(tmp_path / "dp.pt", model=factory)
    assert _same(net, own) and ckpt.removed_prefix == "module."


def test_messages_name_keys_as_the_file_has_them(tmp_path):
    sd = _prefixed(_net().state_dict(), "module.")
    sd["module.9.weight"] = torch.zeros(1)
    torch.save(sd, tmp_path / "w.pt")
    with pytest.raises(CheckpointError, match=r"unexpected keys: module\.9\.weight$"):
        load_model(tmp_path / "w.pt", model=FACTORY)


def test_fit_prefers_the_names_as_they_are():
    from landscape.models.checkpoints import fit_keys

    own = _Holder().state_dict()
    fit = fit_keys(dict(own), own)
    assert fit.prefix == "" and fit.exact


def test_timm_file_says_which_weights_and_offers_ema(tmp_path):
    main, ema = _net().state_dict(), {k: v + 1 for k, v in _net().state_dict().items()}
    torch.save({"state_dict": main, "state_dict_ema": ema, "epoch": 9}, tmp_path / "timm.pth")
    net, ckpt = load_model(tmp_path / "timm.pth", model=FACTORY)
    assert _same(net, main)
    assert (ckpt.weights, ckpt.other_weights) == ("state_dict", ["state_dict_ema"])
    net, ckpt = load_model(load_checkpoint(tmp_path / "timm.pth", weights="ema"), model=FACTORY)
    assert _same(net, ema) and ckpt.weights == "state_dict_ema"
    torch.save(main, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="has no 'state_dict_ema'"):
        load_checkpoint(tmp_path / "plain.pt", weights="ema")
    with pytest.raises(CheckpointError, match="the weight set 'swa' is not known"):
        load_checkpoint(tmp_path / "plain.pt", weights="swa")


def _bn_net() -> nn.Module:
    torch.manual_seed(2)
    return nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))


def test_batch_norm_without_its_counter_loads_with_it_at_zero(tmp_path):
    trained = _bn_net()
    trained.train()
    trained(torch.randn(8, 4))
    sd = {k: v for k, v in trained.state_dict().items() if not k.endswith("num_batches_tracked")}
    reference = _bn_net()
    reference.load_state_dict(sd, strict=True)  # what torch itself accepts
    torch.save(sd, tmp_path / "bn.pt")
    net, ckpt = load_model(tmp_path / "bn.pt", model="tests.models.test_checkpoint_prefixes:_bn_net")
    assert _same(net, reference.state_dict())
    assert net.state_dict()["1.num_batches_tracked"].item() == 0
    assert ckpt.filled_keys == ["1.num_batches_tracked"]
