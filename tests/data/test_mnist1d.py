"""MNIST-1D: local generation with the package's ``make_dataset``, the cache, and the paper's models."""

from __future__ import annotations

import random
import re
import sys

import numpy as np
import pytest
import torch

from landscape.data import mnist1d as m1d
from landscape.errors import DataError, ModelError
from landscape.models.mnist1d import MNIST1DCNN, MNIST1DMLP, conv_output_length

SMALL = 200  # examples before the 80/20 split: a fast stand-in for the default 5000


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(m1d.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_generation_matches_make_dataset_and_keeps_global_rng(cache):
    pytest.importorskip("mnist1d")
    from mnist1d.data import get_dataset_args, make_dataset

    np.random.seed(123)
    random.seed(7)
    np_before, py_before = np.random.get_state()[1].copy(), random.getstate()
    arrays = m1d.mnist1d_arrays(num_samples=SMALL)
    assert np.array_equal(np.random.get_state()[1], np_before)
    assert random.getstate() == py_before

    args = get_dataset_args()
    args.num_samples = SMALL
    ref = make_dataset(args)
    for key in ("x", "x_test"):
        assert arrays[key].dtype == np.float32
        np.testing.assert_array_equal(arrays[key], ref[key].astype(np.float32))
    for key in ("y", "y_test"):
        assert arrays[key].dtype == np.int64
        np.testing.assert_array_equal(arrays[key], ref[key])
    assert arrays["x"].shape == (160, 40) and arrays["x_test"].shape == (40, 40)


def test_second_load_reads_the_cache_without_generating(cache, monkeypatch):
    pytest.importorskip("mnist1d")
    first = m1d.mnist1d_arrays(num_samples=SMALL)
    files = list(cache.glob("mnist1d-*.npz"))
    assert len(files) == 1
    assert not list(cache.glob(".*tmp*")), "no temporary file is left behind"

    import mnist1d.data

    def boom(*a, **k):
        raise AssertionError("make_dataset called although the cache exists")

    monkeypatch.setattr(mnist1d.data, "make_dataset", boom)
    second = m1d.mnist1d_arrays(num_samples=SMALL)
    for key in first:
        np.testing.assert_array_equal(first[key], second[key])
    # another size is another cache entry
    monkeypatch.undo()
    monkeypatch.setenv(m1d.CACHE_ENV, str(cache))
    m1d.mnist1d_arrays(num_samples=100)
    assert len(list(cache.glob("mnist1d-*.npz"))) == 2


def test_tensors_and_splits(cache):
    pytest.importorskip("mnist1d")
    x, y = m1d.mnist1d_tensors("train", num_samples=SMALL)
    xt, yt = m1d.mnist1d_tensors("test", num_samples=SMALL)
    assert x.shape == (160, 40) and x.dtype == torch.float32
    assert y.dtype == torch.int64 and xt.shape == (40, 40) and yt.shape == (40,)
    assert set(y.tolist()) <= set(range(10))
    with pytest.raises(DataError, match="split='val'"):
        m1d.mnist1d_tensors("val")


def test_unreadable_cache_is_one_line(cache):
    pytest.importorskip("mnist1d")
    m1d.mnist1d_arrays(num_samples=SMALL)
    (path,) = cache.glob("mnist1d-*.npz")
    path.write_bytes(b"not an npz")
    with pytest.raises(DataError, match="unreadable.*delete it"):
        m1d.mnist1d_arrays(num_samples=SMALL)


def test_missing_package_names_the_extra(monkeypatch, cache):
    monkeypatch.setitem(sys.modules, "mnist1d", None)  # import now raises ImportError
    monkeypatch.setitem(sys.modules, "mnist1d.data", None)
    with pytest.raises(DataError, match=r"landscape-geometry\[mnist1d\]"):
        m1d.mnist1d_dataset("train")


def test_the_named_extra_exists():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert 'name = "landscape-geometry"' in text
    extras = text.split("[project.optional-dependencies]")[1].split("\n[")[0]
    assert re.search(r'^mnist1d = \["mnist1d', extras, re.M)


def test_too_few_samples_refused(cache):
    pytest.importorskip("mnist1d")
    with pytest.raises(DataError, match="num_samples=3"):
        m1d.mnist1d_arrays(num_samples=3)


def test_through_load_dataset_factory(cache, monkeypatch):
    pytest.importorskip("mnist1d")
    from landscape.data.datasets import DataSpec, load_dataset

    monkeypatch.setattr(m1d, "mnist1d_arrays", lambda **kw: _fake_arrays())
    ds = load_dataset(DataSpec("landscape.data.mnist1d:mnist1d_dataset", split="test"))
    assert len(ds) == 3 and ds[0][0].shape == (40,)


def _fake_arrays():
    return {
        "x": np.zeros((5, 40), np.float32),
        "y": np.arange(5),
        "x_test": np.ones((3, 40), np.float32),
        "y_test": np.arange(3),
    }


@pytest.mark.slow
def test_default_arguments_give_4000_and_1000(cache):
    pytest.importorskip("mnist1d")
    x, y = m1d.mnist1d_tensors("train")
    xt, _ = m1d.mnist1d_tensors("test")
    assert x.shape == (4000, 40) and xt.shape == (1000, 40)
    assert torch.bincount(y, minlength=10).min() > 300  # 500 per digit before the split


# -- models ----------------------------------------------------------------------------------------
def test_mlp_is_the_papers_residual_mlp_in_closed_form():
    torch.manual_seed(0)
    net = MNIST1DMLP().double()
    assert sum(p.numel() for p in net.parameters()) == 40 * 100 + 100 + 100 * 100 + 100 + 100 * 10 + 10
    x = torch.randn(7, 40, dtype=torch.float64)
    relu = lambda t: t.clamp_min(0)  # noqa: E731
    h1 = relu(x @ net.linear1.weight.T + net.linear1.bias)
    h2 = h1 + relu(h1 @ net.linear2.weight.T + net.linear2.bias)
    expected = h2 @ net.linear3.weight.T + net.linear3.bias
    torch.testing.assert_close(net(x), expected, rtol=0, atol=1e-12)
    plain = MNIST1DMLP(residual=False).double()
    plain.load_state_dict(net.state_dict())
    h2p = relu(h1 @ net.linear2.weight.T + net.linear2.bias)
    torch.testing.assert_close(plain(x), h2p @ net.linear3.weight.T + net.linear3.bias, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("length", "kernel", "expected"), [(40, 5, 19), (19, 3, 10), (10, 3, 5)], ids=["conv1", "conv2", "conv3"]
)
def test_conv_output_length(length, kernel, expected):
    assert conv_output_length(length, kernel, 2, 1) == expected
    conv = torch.nn.Conv1d(1, 1, kernel, stride=2, padding=1)
    assert conv(torch.zeros(1, 1, length)).shape[-1] == expected


def test_cnn_shapes_parameters_and_input_layouts():
    torch.manual_seed(0)
    net = MNIST1DCNN().double()
    assert net.head.in_features == 125
    assert sum(p.numel() for p in net.parameters()) == 150 + 1900 + 1900 + 1260
    x = torch.randn(6, 40, dtype=torch.float64)
    out = net(x)
    assert out.shape == (6, 10)
    torch.testing.assert_close(net(x.unsqueeze(1)), out, rtol=0, atol=0)
    # the first layer is the convolution it claims to be: compare with a direct correlation
    conv = net.features[0]
    padded = torch.nn.functional.pad(x, (1, 1))
    windows = padded.unfold(1, 5, 2)  # (N, 19, 5)
    direct = torch.einsum("npk,ck->ncp", windows, conv.weight[:, 0]) + conv.bias[None, :, None]
    torch.testing.assert_close(conv(x.unsqueeze(1)), direct, rtol=0, atol=1e-12)


def test_cnn_too_short_input_is_refused():
    with pytest.raises(ModelError, match="length=2"):
        MNIST1DCNN(length=2)


# -- registered names: --data mnist1d, --model mnist1d-mlp / mnist1d-cnn -------------------------------


def test_data_name_mnist1d_gives_the_generated_split(cache, monkeypatch):
    from landscape.data.datasets import DATASET_NAMES, DataSpec, load_dataset

    assert "mnist1d" in DATASET_NAMES
    monkeypatch.setattr(m1d, "mnist1d_arrays", lambda **kw: _fake_arrays())
    train, test = load_dataset(DataSpec("mnist1d")), load_dataset(DataSpec("mnist1d", split="test"))
    assert len(train) == 5 and len(test) == 3
    assert torch.equal(test[2][0], torch.ones(40)) and int(test[2][1]) == 2
    assert torch.equal(train[0][0], torch.zeros(40))


def test_data_name_mnist1d_without_the_package_is_one_line_naming_the_extra(monkeypatch, cache):
    from landscape.data.datasets import DataSpec, load_dataset

    monkeypatch.setitem(sys.modules, "mnist1d", None)
    monkeypatch.setitem(sys.modules, "mnist1d.data", None)
    with pytest.raises(
        DataError, match=r"^MNIST-1D needs the mnist1d package: .*landscape-geometry\[mnist1d\]"
    ):
        load_dataset(DataSpec("mnist1d"))


@pytest.mark.parametrize(("name", "cls"), [("mnist1d-mlp", MNIST1DMLP), ("mnist1d-cnn", MNIST1DCNN)])
def test_registry_names_build_the_papers_models(name, cls):
    from landscape.models.builders import ModelSpec, build_model, default_model_kwargs

    spec = default_model_kwargs(ModelSpec(name, {}), (40,), 10)
    model = build_model(spec)
    assert type(model) is cls
    assert model(torch.zeros(4, 40)).shape == (4, 10)
    # the data decide the input size and the classes; what the user gave wins
    other = build_model(default_model_kwargs(ModelSpec(name, {"num_classes": 3}), (24,), 7))
    assert other(torch.zeros(2, 24)).shape == (2, 3)


def test_default_model_kwargs_of_every_registry_model():
    from landscape.models.builders import ModelSpec, default_model_kwargs
    from landscape.models.registry import MODELS

    expected = {
        "mlp": {"in_features": 64, "num_classes": 10},
        "cnn": {"in_channels": 1, "num_classes": 10},
        "resnet18": {"in_channels": 1, "num_classes": 10},
        "resnet34": {"in_channels": 1, "num_classes": 10},
        "resnet50": {"in_channels": 1, "num_classes": 10},
        "wrn": {"in_channels": 1, "num_classes": 10},
        "mnist1d-mlp": {"in_features": 64, "num_classes": 10},
        "mnist1d-cnn": {"length": 8, "num_classes": 10},
        "gpt-tiny": {"n_positions": 8, "vocab_size": 10},  # the last axis as positions, classes as tokens
    }
    assert set(expected) == set(MODELS)
    for name, kwargs in expected.items():
        assert default_model_kwargs(ModelSpec(name, {}), (1, 8, 8), 10).kwargs == kwargs
    assert default_model_kwargs(ModelSpec("pkg.mod:make", {"a": 1}), (1, 8, 8), 10).kwargs == {"a": 1}
