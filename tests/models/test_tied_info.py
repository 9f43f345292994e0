"""``describe_checkpoint`` (``landscape info``) counts a tied weight once and lists the tie."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from landscape.cli.main import cli
from landscape.models.builders import ModelSpec, build_model
from landscape.models.checkpoints import (
    Checkpoint,
    describe_checkpoint,
    load_checkpoint,
    save_checkpoint,
    tied_groups,
)

pytest.importorskip("transformers")

from tests.models.hf_folders import saved, tiny_gpt2  # noqa: E402

TIE = ["transformer.wte.weight", "lm_head.weight"]


def test_a_tied_gpt2_checkpoint_counts_its_embedding_once(tmp_path: Path):
    spec = ModelSpec("gpt-tiny", {"vocab_size": 11, "n_positions": 8, "n_layer": 1, "n_embd": 16})
    model = build_model(spec)
    save_checkpoint(tmp_path / "c.pt", model, model_spec=spec)
    desc = describe_checkpoint(load_checkpoint(tmp_path / "c.pt"))
    total = sum(p.numel() for p in model.parameters())
    assert desc["num_parameters"] == total == 11 * 16 + 8 * 16 + 12 * 16**2 + 13 * 16 + 32
    assert desc["tied_parameters"] == [TIE]
    assert sum(desc["parameters_by_layer_type"].values()) == total
    assert desc["parameters_by_layer_type"]["Embedding"] == 11 * 16 + 8 * 16
    assert "Linear" not in desc["parameters_by_layer_type"]  # the head is the embedding


def test_a_tie_the_file_lost_is_found_from_the_model(tmp_path: Path):
    model = tiny_gpt2()
    spec = ModelSpec(f"hf:{saved(model, tmp_path / 'm')}")
    copies = {k: v.clone() for k, v in model.state_dict().items()}  # as a format that stores copies
    assert tied_groups(copies) == []
    desc = describe_checkpoint(Checkpoint(state_dict=copies, source_format="state_dict", model_spec=spec))
    assert desc["tied_parameters"] == [TIE]
    assert desc["num_parameters"] == sum(p.numel() for p in model.parameters())


def test_untied_weights_are_counted_as_before(tmp_path: Path):
    spec = ModelSpec("mlp", {"in_features": 4, "hidden": [3], "num_classes": 2})
    model = build_model(spec)
    save_checkpoint(tmp_path / "c.pt", model, model_spec=spec)
    desc = describe_checkpoint(load_checkpoint(tmp_path / "c.pt"))
    assert desc["tied_parameters"] == [] and desc["num_parameters"] == 4 * 3 + 3 + 3 * 2 + 2


def test_info_prints_the_tie_and_the_count(tmp_path: Path):
    spec = ModelSpec("gpt-tiny", {"vocab_size": 11, "n_positions": 8, "n_layer": 1, "n_embd": 16})
    model = build_model(spec)
    save_checkpoint(tmp_path / "c.pt", model, model_spec=spec)
    res = CliRunner().invoke(cli, ["info", str(tmp_path / "c.pt")], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert f"{sum(p.numel() for p in model.parameters()):,}" in res.output
    assert "tied (counted once)  transformer.wte.weight = lm_head.weight" in res.output
