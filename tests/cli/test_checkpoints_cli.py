"""Checkpoints as people have them, through the CLI (issue 21, items 7, 8, 13, 14): wrapper prefixes,
extra keys, timm's EMA weights and a batch norm without its counter in ``info`` and ``evaluate``; an
``-o`` that is a broken symbolic link; a killed writer's temporary on a rerun."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from landscape.cli.main import cli
from landscape.models.builders import ModelSpec, build_model
from landscape.models.checkpoints import save_checkpoint

MLP = ("--model", "mlp", "--model-kwargs", '{"hidden": [8]}')
CNN = ("--model", "cnn", "--model-kwargs", '{"width": 4}')


def _mlp_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return build_model("mlp", hidden=(8,)).state_dict()


def _run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _evaluation(path, model):
    r = _run("evaluate", path, *model, "--data", "digits", "--samples", "32", "--device", "cpu", "--json")
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


@pytest.mark.parametrize("prefix", ["_orig_mod.", "module._orig_mod.", "_orig_mod.module."])
def test_info_and_evaluate_read_a_compiled_and_wrapped_model(tmp_path, prefix):
    sd = _mlp_state()
    torch.save(sd, tmp_path / "plain.pt")
    torch.save({prefix + k: v for k, v in sd.items()}, tmp_path / "wrapped.pt")
    r = _run("info", tmp_path / "wrapped.pt", *MLP)
    assert r.exit_code == 0, r.output
    row = next(line for line in r.output.splitlines() if line.startswith("prefix removed"))
    assert row.split()[-1] == repr(prefix)
    plain = _evaluation(tmp_path / "plain.pt", MLP)
    wrapped = _evaluation(tmp_path / "wrapped.pt", MLP)
    assert wrapped["loss"] == plain["loss"]


def test_info_names_a_lightning_files_ignored_key_and_averaged_model(tmp_path):
    sd = _mlp_state()
    state = {**{"model." + k: v for k, v in sd.items()}, "criterion.weight": torch.ones(10)}
    torch.save({"state_dict": state, "pytorch-lightning_version": "2.1.0"}, tmp_path / "l.ckpt")
    r = _run("info", tmp_path / "l.ckpt", *MLP, "--json")
    assert r.exit_code == 0, r.output
    keys = json.loads(r.stdout)["keys"]
    assert (keys["removed_prefix"], keys["ignored"]) == ("model.", ["criterion.weight"])
    r = _run("info", tmp_path / "l.ckpt", *MLP)
    assert "criterion.weight (not the model's)" in r.output
    torch.save(
        {**{"module." + k: v for k, v in sd.items()}, "n_averaged": torch.tensor(3)}, tmp_path / "swa.pt"
    )
    r = _run("info", tmp_path / "swa.pt", *MLP, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["num_parameters"] == sum(v.numel() for v in sd.values())


def test_info_says_which_weights_of_a_timm_file_and_takes_ema(tmp_path):
    sd = _mlp_state()
    ema = {k: v * 0.5 for k, v in sd.items()}
    torch.save({"state_dict": sd, "state_dict_ema": ema}, tmp_path / "timm.pth")
    r = _run("info", tmp_path / "timm.pth", *MLP)
    assert r.exit_code == 0, r.output
    assert "state_dict (the file also holds state_dict_ema; --weights ema uses it)" in r.output
    r = _run("info", tmp_path / "timm.pth", *MLP, "--weights", "ema", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["keys"]["weights"] == "state_dict_ema"
    torch.save(sd, tmp_path / "plain.pt")
    r = _run("info", tmp_path / "plain.pt", *MLP, "--weights", "ema")
    assert r.exit_code != 0 and "Traceback" not in r.output
    assert "has no 'state_dict_ema'" in r.output and len(r.output.strip().splitlines()) == 1, r.output


def test_evaluate_reads_a_batch_norm_checkpoint_without_its_counter(tmp_path):
    torch.manual_seed(0)
    net = build_model("cnn", width=4)
    full = net.state_dict()
    assert any(k.endswith("num_batches_tracked") for k in full)
    torch.save(full, tmp_path / "full.pt")
    torch.save({k: v for k, v in full.items() if not k.endswith("num_batches_tracked")}, tmp_path / "bn.pt")
    assert _evaluation(tmp_path / "bn.pt", CNN)["loss"] == _evaluation(tmp_path / "full.pt", CNN)["loss"]
    r = _run("info", tmp_path / "bn.pt", *CNN)
    assert r.exit_code == 0 and "keys filled" in r.output, r.output


@pytest.fixture
def broken_links(tmp_path):
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere")
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    return [dangling, loop]


def test_sharpness_and_train_refuse_a_broken_link_as_out_folder(tmp_path, broken_links):
    torch.manual_seed(0)
    ckpt = save_checkpoint(
        tmp_path / "m.pt", build_model("mlp", hidden=(8,)), model_spec=ModelSpec("mlp", {"hidden": [8]})
    )
    for link in broken_links:
        for args in (
            ("sharpness", ckpt, "--data", "digits", "--samples", "32", "--top-k", "1", "-o", link),
            ("train", "--model", "mlp", "--epochs", "1", "--samples", "32", "-o", link),
        ):
            r = _run(*args)
            assert r.exit_code != 0
            assert "symbolic link that leads to no folder" in r.output, r.output
            assert "FileExistsError" not in r.output and "Traceback" not in r.output
            assert len(r.output.strip().splitlines()) == 1, r.output
