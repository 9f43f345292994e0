"""``hf-disk:DIR``: a tokenized Hugging Face ``datasets`` folder (``save_to_disk``) read as dict items."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from landscape.data.datasets import DataSpec, analysis_loader, load_dataset
from landscape.errors import DataError, NoSplitError

datasets = pytest.importorskip("datasets")


def _tokenized(n: int, seed: int) -> dict[str, list]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 9, (n, 5), generator=g)
    return {
        "text": [f"sentence {i}" for i in range(n)],  # the raw text: not for the model
        "input_ids": ids.tolist(),
        "attention_mask": torch.ones(n, 5, dtype=torch.int64).tolist(),
        "labels": (ids % 3)[:, 0].tolist(),
    }


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    splits = {"train": _tokenized(6, 0), "test": _tokenized(4, 1)}
    dd = datasets.DatasetDict({k: datasets.Dataset.from_dict(v) for k, v in splits.items()})
    dd.save_to_disk(str(tmp_path / "tok"))
    return tmp_path / "tok"


def test_the_splits_read_as_dicts_of_tensors_without_the_raw_text(folder: Path):
    train = load_dataset(DataSpec(f"hf-disk:{folder}"))
    test = load_dataset(DataSpec(f"hf-disk:{folder}", split="test"))
    assert (len(train), len(test)) == (6, 4)
    assert isinstance(train, torch.utils.data.Dataset)  # what the objective and the loaders take
    item = train[2]
    assert set(item) == {"input_ids", "attention_mask", "labels"}
    assert torch.equal(item["input_ids"], torch.tensor(_tokenized(6, 0)["input_ids"][2]))
    batch = next(iter(analysis_loader(train, 4)))
    assert batch["input_ids"].shape == (4, 5) and batch["labels"].shape == (4,)
    assert len(load_dataset(DataSpec(f"hf-disk:{folder}", subset=3))) == 3


def test_one_saved_dataset_is_the_training_split_only(tmp_path: Path):
    datasets.Dataset.from_dict(_tokenized(3, 0)).save_to_disk(str(tmp_path / "one"))
    assert len(load_dataset(DataSpec(f"hf-disk:{tmp_path / 'one'}"))) == 3
    with pytest.raises(NoSplitError, match=r"holds one dataset \(used as the training split\) and no test"):
        load_dataset(DataSpec(f"hf-disk:{tmp_path / 'one'}", split="test"))


def test_a_folder_that_is_not_a_datasets_folder_is_named(tmp_path: Path):
    with pytest.raises(DataError, match=r"'hf-disk:.*nope': '.*nope' is not a folder"):
        load_dataset(DataSpec(f"hf-disk:{tmp_path / 'nope'}"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"is not a datasets folder .*write one with save_to_disk"):
        load_dataset(DataSpec(f"hf-disk:{tmp_path / 'empty'}"))


def test_without_the_datasets_package_one_line_names_it(folder: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets now raises ImportError
    with pytest.raises(DataError, match=r"needs the 'datasets' package, which is not installed"):
        load_dataset(DataSpec(f"hf-disk:{folder}"))
