"""The command line on Hugging Face folders, gpt-tiny and the text data: ``--hf-task``, ``--data-kwargs``
and ``landscape evaluate`` / ``info`` on a gpt-tiny checkpoint."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from landscape.cli.main import cli
from landscape.data.datasets import DataSpec, load_dataset
from landscape.models.builders import ModelSpec, build_model
from landscape.models.checkpoints import save_checkpoint

pytest.importorskip("transformers")

from tests.models.hf_folders import saved, tiny_bert  # noqa: E402


def _run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def gpt_tiny_checkpoint(tmp_path: Path) -> tuple[Path, DataSpec]:
    data = DataSpec("text", kwargs={"seq_len": 32})
    vocab = len(load_dataset(DataSpec("text", split="test", kwargs=dict(data.kwargs))).vocab)
    spec = ModelSpec("gpt-tiny", {"vocab_size": vocab, "n_positions": 32, "n_layer": 1, "n_embd": 16})
    save_checkpoint(tmp_path / "ckpt.pt", build_model(spec), model_spec=spec, data_spec=data)
    return tmp_path / "ckpt.pt", data


def test_evaluate_a_gpt_tiny_checkpoint_on_its_recorded_text_data(gpt_tiny_checkpoint):
    path, _ = gpt_tiny_checkpoint
    res = _run("evaluate", str(path), "--samples", "24", "--batch-size", "8", "--device", "cpu", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["num_samples"] == 24 and math.isfinite(out["loss"]) and 0.0 <= out["accuracy"] <= 1.0
    assert abs(out["loss"] - math.log(103)) < 0.5  # at init: near log(vocab) on pydoc_data's characters
    assert out["data"]["kwargs"]["seq_len"] == 32  # the recorded sequence length, not the default 64


def test_info_shows_the_folder_model_and_takes_the_task(tmp_path: Path):
    folder = saved(tiny_bert(), tmp_path / "bert")
    config = json.loads((folder / "config.json").read_text())
    config.pop("architectures")
    (folder / "config.json").write_text(json.dumps(config))
    model = build_model(ModelSpec(f"hf:{folder}", {"task": "sequence-classification"}))
    save_checkpoint(tmp_path / "c.pt", model, model_spec=ModelSpec(f"hf:{folder}", {}))
    res = CliRunner().invoke(cli, ["info", str(tmp_path / "c.pt")])
    assert res.exit_code == 1 and "names no architecture, which is not one task" in res.output
    assert len(res.output.strip().splitlines()) == 1
    res = _run("info", str(tmp_path / "c.pt"), "--hf-task", "sequence-classification", "--json")
    assert res.exit_code == 0, res.output
    desc = json.loads(res.stdout)  # transformers draws its loading bar on stderr
    assert desc["model"]["kwargs"] == {"task": "sequence-classification"}
    assert desc["num_parameters"] == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("{seq_len: 3}", "--data-kwargs is not valid JSON"),
        ("[128]", "--data-kwargs must be a JSON object"),
    ],
    ids=["not-json", "not-an-object"],
)
def test_data_kwargs_must_be_a_json_object(gpt_tiny_checkpoint, value, message):
    path, _ = gpt_tiny_checkpoint
    res = CliRunner().invoke(cli, ["evaluate", str(path), "--data-kwargs", value])
    assert res.exit_code != 0 and message in res.output
    assert len([line for line in res.output.splitlines() if line.strip()]) == 1


def test_the_help_offers_the_folder_forms_and_the_text_data():
    res = _run("evaluate", "--help")
    text = "".join(res.output.split())  # the help wraps anywhere, hyphens included
    for shown in (
        "hf:DIR",
        "hf-config:DIR",
        "gpt-tiny",
        "text(embeddedcharacters",
        "--hf-task",
        "--data-kwargs",
    ):
        assert shown in text


def test_data_kwargs_reach_the_data_spec(gpt_tiny_checkpoint):
    path, _ = gpt_tiny_checkpoint
    res = _run("evaluate", str(path), "--samples", "8", "--data-kwargs", '{"seq_len": 16}', "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["data"]["kwargs"]["seq_len"] == 16


def test_evaluate_a_bert_folder_on_a_saved_tokenized_dataset(tmp_path: Path):
    datasets = pytest.importorskip("datasets")
    import torch

    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 20, (10, 6), generator=g)
    rows = {"input_ids": ids.tolist(), "attention_mask": torch.ones(10, 6, dtype=torch.int64).tolist()}
    rows["labels"] = (ids[:, 0] % 3).tolist()
    split = datasets.Dataset.from_dict(rows)
    datasets.DatasetDict({"train": split, "test": split}).save_to_disk(str(tmp_path / "tok"))
    model = tiny_bert()
    spec = ModelSpec(f"hf:{saved(model, tmp_path / 'bert')}")
    save_checkpoint(tmp_path / "c.pt", model, model_spec=spec)
    res = _run(
        "evaluate", str(tmp_path / "c.pt"), "--data", f"hf-disk:{tmp_path / 'tok'}", "--dtype", "float64"
    )
    assert res.exit_code == 0, res.output
    out = {line.split()[0]: line.split()[1] for line in res.stdout.splitlines() if line.strip()}
    # the direct mean cross-entropy of the 10 sequences, in float64
    model = model.double().eval()
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
        expected = torch.nn.functional.cross_entropy(logits, ids[:, 0] % 3).item()
    assert abs(float(out["loss"]) - expected) < 1e-5 and out["num_samples"] == "10"


def test_train_gpt_tiny_on_text_sizes_the_model_from_the_data_kwargs(tmp_path: Path):
    out = tmp_path / "run"
    res = _run(
        "train", "--model", "gpt-tiny", "--model-kwargs", '{"n_layer": 1, "n_embd": 16, "n_head": 2}',
        "--data", "text", "--data-kwargs", '{"seq_len": 16}', "--samples", "48", "--batch-size", "16",
        "--epochs", "1", "--optimizer", "adamw", "--lr", "1e-3", "--device", "cpu", "-q", "-o", str(out),
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    config = json.loads((out / "config.json").read_text())
    test_split = load_dataset(DataSpec("text", split="test", kwargs={"seq_len": 16}))
    assert config["data"]["kwargs"]["seq_len"] == 16
    assert config["model"]["kwargs"]["n_positions"] == 16
    assert config["model"]["kwargs"]["vocab_size"] == len(test_split.vocab)
    metrics = (out / "metrics.csv").read_text().splitlines()
    header, last = metrics[0].split(","), metrics[-1].split(",")
    assert 0 < float(last[header.index("test_accuracy")]) < 1  # token accuracy, not NaN
