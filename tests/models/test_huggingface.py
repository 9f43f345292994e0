"""``hf:DIR`` (a Hugging Face folder with its weights) and ``hf-config:DIR`` (a seeded random init from
its config.json): built by ``build_model``, their task read from the folder or given, and a checkpoint of
one reloads."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from landscape.errors import ModelError
from landscape.models.builders import ModelSpec, build_model
from landscape.models.checkpoints import load_model, save_checkpoint
from landscape.models.registry import model_help

pytest.importorskip("transformers")

from tests.models.hf_folders import saved, tiny_bert, tiny_gpt2  # noqa: E402


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize(
    ("make", "cls"),
    [(tiny_gpt2, "GPT2LMHeadModel"), (tiny_bert, "BertForSequenceClassification")],
    ids=["gpt2", "bert"],
)
def test_a_saved_folder_builds_with_its_weights(make, cls, tmp_path: Path):
    model = make()
    built = build_model(ModelSpec(f"hf:{saved(model, tmp_path / 'm')}"))
    assert type(built).__name__ == cls and _same_weights(built, model)


def test_the_gpt2_folder_keeps_its_tie(tmp_path: Path):
    built = build_model(ModelSpec(f"hf:{saved(tiny_gpt2(), tmp_path / 'm')}"))
    assert built.lm_head.weight is built.transformer.wte.weight


def test_hf_config_is_a_seeded_random_init(tmp_path: Path):
    model = tiny_gpt2()
    folder = saved(model, tmp_path / "m")
    a = build_model(ModelSpec(f"hf-config:{folder}", {"seed": 3}))
    b = build_model(ModelSpec(f"hf-config:{folder}", {"seed": 3}))
    c = build_model(ModelSpec(f"hf-config:{folder}", {"seed": 4}))
    assert _same_weights(a, b) and not _same_weights(a, c) and not _same_weights(a, model)
    assert a.config.n_embd == 8 and type(a).__name__ == "GPT2LMHeadModel"
    # without a seed it draws from the current generator (a training run seeds that)
    torch.manual_seed(5)
    d = build_model(ModelSpec(f"hf-config:{folder}"))
    torch.manual_seed(5)
    assert _same_weights(d, build_model(ModelSpec(f"hf-config:{folder}")))


def _without_architectures(folder: Path) -> Path:
    config = json.loads((folder / "config.json").read_text())
    config.pop("architectures", None)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_a_folder_that_does_not_say_its_task_needs_one(tmp_path: Path):
    folder = _without_architectures(saved(tiny_bert(), tmp_path / "m"))
    with pytest.raises(
        ModelError, match=r"config.json names no architecture, which is not one task; give the task"
    ):
        build_model(ModelSpec(f"hf:{folder}"))
    built = build_model(ModelSpec(f"hf:{folder}", {"task": "sequence-classification"}))
    assert type(built).__name__ == "BertForSequenceClassification" and _same_weights(built, tiny_bert())
    masked = build_model(ModelSpec(f"hf-config:{folder}", {"task": "masked-lm", "seed": 0}))
    assert type(masked).__name__ == "BertForMaskedLM"
    with pytest.raises(ModelError, match=r"task 'lm' is not one of causal-lm, sequence-classification"):
        build_model(ModelSpec(f"hf:{folder}", {"task": "lm"}))


@pytest.mark.parametrize(
    ("architectures", "task"),
    [
        (["GPT2LMHeadModel"], "causal-lm"),
        (["LlamaForCausalLM"], "causal-lm"),
        (["BertForMaskedLM"], "masked-lm"),
        (["ViTForImageClassification"], "image-classification"),
        (["MyOwnForSequenceClassification"], "sequence-classification"),
    ],
    ids=lambda v: str(v),
)
def test_the_task_is_read_from_the_recorded_class(architectures, task):
    from landscape.models.huggingface import resolve_task

    assert resolve_task("hf:x", architectures, None) == task


def test_a_folder_that_is_not_a_model_is_named(tmp_path: Path):
    with pytest.raises(ModelError, match=r"'hf:.*nope': '.*nope' is not a folder"):
        build_model(ModelSpec(f"hf:{tmp_path / 'nope'}"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match=r"is not a Hugging Face model folder \(no config.json\)"):
        build_model(ModelSpec(f"hf-config:{tmp_path / 'empty'}"))
    config_only = tmp_path / "config-only"
    tiny_gpt2().config.save_pretrained(str(config_only))
    with pytest.raises(
        ModelError, match=r"does not build: .*; use 'hf-config:.*config-only' for a random init"
    ):
        build_model(ModelSpec(f"hf:{config_only}", {"task": "causal-lm"}))
    as_random = build_model(ModelSpec(f"hf-config:{config_only}", {"task": "causal-lm"}))
    assert type(as_random).__name__ == "GPT2LMHeadModel"
    with pytest.raises(ModelError, match=r"loads saved weights and takes no seed"):
        build_model(ModelSpec(f"hf:{saved(tiny_gpt2(), tmp_path / 'm')}", {"seed": 1}))


def test_without_transformers_one_line_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    folder = saved(tiny_gpt2(), tmp_path / "m")
    monkeypatch.setitem(sys.modules, "transformers", None)
    expected = r"needs the transformers package, which is not installed: pip install 'landscape-geometry\[transformers\]'"
    with pytest.raises(ModelError, match=r"model 'hf:.*' " + expected):
        build_model(ModelSpec(f"hf:{folder}"))
    with pytest.raises(ModelError, match=r"model 'gpt-tiny' " + expected):
        build_model(ModelSpec("gpt-tiny"))


def test_a_checkpoint_of_a_folder_model_reloads(tmp_path: Path):
    folder = saved(tiny_gpt2(), tmp_path / "m")
    spec = ModelSpec(f"hf:{folder}")
    model = build_model(spec)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.25)  # trained away from the folder's weights
    save_checkpoint(tmp_path / "ckpt.pt", model, model_spec=spec)
    net, ckpt = load_model(tmp_path / "ckpt.pt")
    assert ckpt.model_spec.to_dict() == {"name": f"hf:{folder}", "kwargs": {}}
    assert _same_weights(net, model) and net.lm_head.weight is net.transformer.wte.weight


def test_the_help_lists_the_folder_forms():
    assert "hf:DIR: a Hugging Face folder with its weights" in model_help()
    assert "hf-config:DIR: a random init" in model_help()
