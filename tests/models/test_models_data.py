"""Model registry against published parameter counts; data sources offline; device resolution."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from landscape.data.datasets import DataSpec, digits_tensors, fixed_subset, load_dataset, tensor_file_tensors
from landscape.device import resolve_device, resolve_dtype
from landscape.errors import ConfigError, DataError, ModelError
from landscape.models.builders import build_model, count_parameters


@pytest.mark.parametrize(
    ("name", "kwargs", "expected"),
    [
        # kuangliu/pytorch-cifar counts for CIFAR-10 (3x3 stem, no max-pool)
        pytest.param("resnet18", {}, 11_173_962, id="resnet18-cifar10"),
        pytest.param("resnet34", {}, 21_282_122, id="resnet34-cifar10"),
        pytest.param("resnet50", {}, 23_520_842, id="resnet50-cifar10"),
        pytest.param("resnet18", {"num_classes": 100}, 11_220_132, id="resnet18-cifar100"),
        # Zagoruyko & Komodakis 2016: WRN-28-10 has 36.5M parameters
        pytest.param("wrn", {"depth": 28, "width": 10}, 36_479_194, id="wrn-28-10"),
        pytest.param("wrn", {"depth": 16, "width": 4}, 2_748_890, id="wrn-16-4"),
    ],
)
def test_registry_parameter_counts(name, kwargs, expected):
    with torch.device("meta"):  # no memory, no init time
        model = build_model(name, **kwargs)
    assert count_parameters(model) == expected


@pytest.mark.parametrize(
    ("name", "shape"), [("mlp", (5, 1, 8, 8)), ("cnn", (5, 1, 8, 8)), ("resnet18", (2, 3, 32, 32))]
)
def test_registry_models_run_forward(name, shape):
    out = build_model(name).eval()(torch.randn(shape))
    assert out.shape == (shape[0], 10)


def test_unknown_model_and_bad_kwargs():
    with pytest.raises(ModelError, match=r"unknown model 'resnet19'; choose one of mlp, cnn, resnet18"):
        build_model("resnet19")
    with pytest.raises(ModelError, match=r"does not take arguments \{'depthh': 3\}"):
        build_model("wrn", depthh=3)
    with pytest.raises(ModelError, match="6n\\+4"):
        build_model("wrn", depth=27)
    with pytest.raises(
        ModelError, match="cannot import module 'no_such_pkg.mod' for model 'no_such_pkg.mod:f'"
    ):
        build_model("no_such_pkg.mod:f")


def test_digits_is_offline_real_and_split_fixed():
    xtr, ytr = digits_tensors("train")
    xte, yte = digits_tensors("test")
    assert xtr.shape == (1438, 1, 8, 8) and xte.shape == (359, 1, 8, 8)
    assert ytr.dtype == torch.int64 and set(ytr.tolist()) == set(range(10))
    assert float(xtr.min()) >= 0.0 and float(xtr.max()) == 1.0
    # the split is a partition of scikit-learn's 1797 images, the same every call
    from sklearn.datasets import load_digits

    all_x = torch.tensor(load_digits().images, dtype=torch.float32) / 16
    assert len(xtr) + len(xte) == len(all_x)
    assert torch.equal(digits_tensors("train")[0], xtr)
    rows = {tuple(r.flatten().tolist()) for r in torch.cat([xtr, xte])}
    assert rows == {tuple(r.flatten().tolist()) for r in all_x}


def test_fixed_subset_is_seeded_and_stable():
    ds = load_dataset(DataSpec("digits"))
    a = fixed_subset(ds, 50, seed=1)
    b = fixed_subset(ds, 50, seed=1)
    c = fixed_subset(ds, 50, seed=2)
    assert len(a) == 50 and torch.equal(a.tensors[0], b.tensors[0])
    assert not torch.equal(a.tensors[0], c.tensors[0])
    with pytest.raises(DataError, match="subset=0 must be a positive number"):
        fixed_subset(ds, 0)


def test_tensor_files(tmp_path):
    x, y = torch.randn(6, 3), torch.arange(6) % 2
    torch.save({"x": x, "y": y}, tmp_path / "d.pt")
    np.savez(tmp_path / "d.npz", x=x.numpy(), y=y.numpy())
    for f in ("d.pt", "d.npz"):
        xx, yy = tensor_file_tensors(tmp_path / f)
        assert torch.equal(xx, x) and torch.equal(yy, y)
    ds = load_dataset(DataSpec(str(tmp_path / "d.npz")))
    assert len(ds) == 6
    torch.save({"x": x}, tmp_path / "bad.pt")
    with pytest.raises(DataError, match="keys 'x' and 'y'"):
        tensor_file_tensors(tmp_path / "bad.pt")


def test_mnist_idx_and_cifar_pickle_layouts(tmp_path):
    import pickle
    import struct

    imgs = np.arange(3 * 28 * 28, dtype=np.uint8).reshape(3, 28, 28)
    labels = np.array([1, 7, 3], dtype=np.uint8)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(
        struct.pack(">BBBBIII", 0, 0, 8, 3, 3, 28, 28) + imgs.tobytes()
    )
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(
        struct.pack(">BBBBI", 0, 0, 8, 1, 3) + labels.tobytes()
    )
    ds = load_dataset(DataSpec("mnist", data_dir=str(tmp_path)))
    x, y = ds.tensors
    assert x.shape == (3, 1, 28, 28) and y.tolist() == [1, 7, 3]
    assert float(x[0, 0, 0, 5]) == pytest.approx(5 / 255)

    cdir = tmp_path / "cifar-10-batches-py"
    cdir.mkdir()
    data = np.random.default_rng(0).integers(0, 256, size=(2, 3072), dtype=np.uint8)
    for name in [f"data_batch_{i}" for i in range(1, 6)]:
        with open(cdir / name, "wb") as fh:
            pickle.dump({b"data": data, b"labels": [4, 9]}, fh)
    ds = load_dataset(DataSpec("cifar10", data_dir=str(tmp_path)))
    x, y = ds.tensors
    assert x.shape == (10, 3, 32, 32) and y.tolist() == [4, 9] * 5
    assert float(x[1, 2, 31, 31]) == pytest.approx(data[1, -1] / 255)


def test_cifar_file_with_code_is_refused(tmp_path):
    import pickle

    cdir = tmp_path / "cifar-10-batches-py"
    cdir.mkdir()
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (cdir / "test_batch").write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}))
    with pytest.raises(DataError, match="refusing to unpickle"):
        load_dataset(DataSpec("cifar10", split="test", data_dir=str(tmp_path)))
    assert not marker.exists()


def test_device_auto_is_cpu_here_and_priority(monkeypatch):
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device(None).type in ("cpu", "mps")
    with pytest.raises(ConfigError, match="no CUDA device"):
        resolve_device("cuda:0")
    with pytest.raises(ConfigError, match="choose auto, cpu, cuda, cuda:N or mps"):
        resolve_device("tpu")
    assert resolve_dtype("float64") is torch.float64
    with pytest.raises(ConfigError, match="^dtype='half'"):
        resolve_dtype("half")
