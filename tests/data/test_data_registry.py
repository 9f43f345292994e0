"""The data registry: which source reads a data name, and a new dataset is one reader plus one entry
(it then trains through ``landscape train``, test split included, and the help lists it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from torch.utils.data import TensorDataset

from landscape.cli.main import cli
from landscape.data.datasets import DataSpec, load_dataset
from landscape.data.registry import (
    DATA_SOURCES,
    DataSource,
    data_help,
    data_source,
    dataset_names,
    register_dataset,
)
from landscape.errors import DataError
from landscape.training.batches import load_test_split


@pytest.mark.parametrize(
    ("name", "source", "test_split"),
    [
        ("digits", "digits", True),
        ("mnist1d", "mnist1d", True),
        ("cifar10", "cifar10", True),
        ("cifar100", "cifar100", True),
        ("mnist", "mnist", True),
        ("data/train.npz", "FILE", False),
        ("x.pt", "FILE", False),
        ("mypkg.data:make", "pkg.mod:factory", True),
        ("text", "text", True),
        ("hf-disk:/data/tok", "hf-disk:DIR", True),
    ],
    ids=lambda v: str(v),
)
def test_each_data_name_finds_its_source(name, source, test_split):
    found = data_source(name)
    assert found.name == source and found.has_test_split is test_split


def test_an_unknown_name_lists_the_names_and_forms():
    with pytest.raises(DataError, match=r"unknown dataset 'imagenet'; choose one of digits, mnist1d, "):
        data_source("imagenet")
    assert dataset_names() == ("digits", "mnist1d", "cifar10", "cifar100", "mnist", "text")
    assert data_help().startswith("digits (embedded), mnist1d (")


def _blobs(name: str, data_dir: str | None, split: str) -> TensorDataset:
    """A toy dataset as a user would add one: two Gaussian blobs in 4-D, 80 train / 40 test."""
    g = torch.Generator().manual_seed(0 if split == "train" else 1)
    n = 80 if split == "train" else 40
    y = torch.arange(n) % 2
    return TensorDataset(torch.randn(n, 4, generator=g) + 3.0 * y[:, None], y)


@pytest.fixture
def blobs(monkeypatch: pytest.MonkeyPatch) -> DataSource:
    source = DataSource("toy-blobs", _blobs, "two Gaussian blobs")
    monkeypatch.setattr("landscape.data.registry.DATA_SOURCES", [source, *DATA_SOURCES])
    return source


def test_a_registered_dataset_trains_through_the_train_command(blobs, tmp_path: Path):
    assert len(load_dataset(DataSpec("toy-blobs", split="test"))) == 40
    assert "toy-blobs (two Gaussian blobs)" in data_help()
    assert len(load_test_split(DataSpec("toy-blobs"))) == 40
    args = ["train", "--data", "toy-blobs", "--model", "mlp", "--batch-size", "16", "--epochs", "2"]
    res = CliRunner().invoke(
        cli, [*args, "-o", str(tmp_path / "run"), "-q", "--json"], catch_exceptions=False
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["test_accuracy"] > 0.9  # blobs 3 standard deviations apart
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["data"]["name"] == "toy-blobs" and saved["model"]["kwargs"]["in_features"] == 4


@pytest.mark.parametrize("name", ["digits", "mine.npz", "pkg.mod:make"], ids=["taken", "file", "factory"])
def test_register_dataset_refuses_a_name_that_reads_otherwise(name):
    with pytest.raises(DataError, match="is taken or reads as a file or factory"):
        register_dataset(DataSource(name, _blobs, "toy"))


def test_register_dataset_adds_a_named_source_before_the_patterns():
    register_dataset(DataSource("toy-blobs-2", _blobs, "toy"))
    try:
        assert dataset_names()[-1] == "toy-blobs-2" and DATA_SOURCES[-1].name == "pkg.mod:factory"
        assert len(load_dataset(DataSpec("toy-blobs-2"))) == 80
    finally:
        DATA_SOURCES[:] = [s for s in DATA_SOURCES if s.name != "toy-blobs-2"]
