"""Input/output edge cases: weights' dtypes, refused pickles, damaged files, factories, subsets, file modes."""

from __future__ import annotations

import errno
import gzip
import os
import struct
import sys
import warnings

import numpy as np
import pytest
import torch

from landscape.data.datasets import DataSpec, load_dataset
from landscape.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    NoSplitError,
    OutputWriteError,
    SubsetSizeWarning,
)
from landscape.io import atomic
from landscape.io.atomic import atomic_save_npz, atomic_torch_save, atomic_write_json, current_umask
from landscape.models.builders import ModelSpec, build_model
from landscape.models.checkpoints import FORMAT_NAME, load_checkpoint, load_model, save_checkpoint
from landscape.objective.loading import check_labels_fit, objective_from_checkpoint, resolve_data_spec

# -- item 4: integer weights --------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["safetensors", "state-dict"])
def test_integer_weights_for_float_parameters_are_refused(tmp_path, fmt):
    """Before: the integer tensor was copied into the float weight, truncating it (accuracy 0.097)."""
    model = build_model("mlp", hidden=[4])
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    sd["net.1.weight"] = (sd["net.1.weight"] * 10).to(torch.int64)
    if fmt == "safetensors":
        from safetensors.torch import save_file

        path = tmp_path / "w.safetensors"
        save_file(sd, str(path))
    else:
        path = tmp_path / "w.pt"
        torch.save(sd, path)
    with pytest.raises(CheckpointError, match=r"net\.1\.weight \(int64\).*floating point"):
        load_model(path, model="mlp", model_kwargs={"hidden": [4]})


def test_integer_buffers_that_are_integer_in_the_model_still_load(cnn_checkpoint):
    """num_batches_tracked is int64 in the model too: not refused."""
    net, _ = load_model(cnn_checkpoint)
    assert any(not b.is_floating_point() for b in net.buffers())


# -- code-executing pickles ---------------------------------------------------------------------


class _Reduce:
    """Pickles as ``func(*args)``; the tests only ever pick calls that fail harmlessly."""

    def __init__(self, func, args) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


def test_blocked_global_is_named_and_never_called(tmp_path):
    """torch 2.13 words it 'unsupported GLOBAL posix.system whose module posix is blocked'.

    os.system with an int argument would only raise TypeError, so even a wrong load runs no shell.
    """
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "x": _Reduce(os.system, (12345,))}, path)
    name = f"{os.system.__module__}.system"
    with pytest.raises(CheckpointError, match=rf"{name}.*unsafe_load=True, which executes code"):
        load_checkpoint(path)


def test_unsafe_load_of_a_failing_pickle_says_so(tmp_path, monkeypatch):
    """With unsafe_load the file's pickle is run; one whose global cannot be imported gets an honest line."""
    mod = tmp_path / "i8_vanishing_module.py"
    marker = tmp_path / "ran.txt"
    mod.write_text("def payload(path):\n    open(path, 'w').close()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import i8_vanishing_module

    path = tmp_path / "gone.pt"
    torch.save({"x": _Reduce(i8_vanishing_module.payload, (str(marker),))}, path)
    # The module disappears, so unpickling can only fail at the import, before any call.
    del sys.modules["i8_vanishing_module"]
    mod.unlink()
    with pytest.raises(CheckpointError, match="i8_vanishing_module.payload.*unsafe_load=True"):
        load_checkpoint(path)
    with pytest.raises(
        CheckpointError,
        match=r"could not be unpickled even with unsafe_load=True .*i8_vanishing_module.payload.*"
        r"ModuleNotFoundError",
    ):
        load_checkpoint(path, unsafe_load=True)
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_plain_pickle_with_a_global_is_named_without_running_it(tmp_path, protocol):
    """pickle.dump files fail torch's loader before any global is named; the opcodes name it."""
    import pickle

    path = tmp_path / "plain.pt"
    payload = {"state_dict": {"w": torch.zeros(2)}, "x": _Reduce(os.system, (12345,))}
    path.write_bytes(pickle.dumps(payload, protocol=protocol))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's protocol note is silenced, nothing else is raised
        with pytest.raises(CheckpointError, match=rf"'{os.system.__module__}.system'.*unsafe_load=True"):
            load_checkpoint(path)


def test_plain_pickle_of_tensors_says_how_to_resave(tmp_path):
    import pickle

    path = tmp_path / "plain.pt"
    path.write_bytes(pickle.dumps({"w": torch.zeros(2)}))
    with pytest.raises(
        CheckpointError, match=r"written by pickle, not torch.save.*re-save it with torch.save"
    ):
        load_checkpoint(path)


def test_legacy_torch_save_format_still_loads(tmp_path):
    path = tmp_path / "legacy.pt"
    torch.save({"w": torch.arange(3.0)}, path, _use_new_zipfile_serialization=False)
    assert torch.equal(load_checkpoint(path).state_dict["w"], torch.arange(3.0))


# -- our format with bad keys -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "pattern"),
    [
        pytest.param(lambda o: o.pop("state_dict"), "no 'state_dict' key", id="no-state-dict"),
        pytest.param(
            lambda o: o.__setitem__("state_dict", [1, 2]), "'state_dict' holds a list", id="state-dict-list"
        ),
        pytest.param(lambda o: o.__setitem__("model", "cnn"), "key 'model' holds 'cnn'", id="model-string"),
        pytest.param(
            lambda o: o.__setitem__("model", {"name": "cnn", "kwargs": 3}), "kwargs 3", id="model-kwargs-int"
        ),
    ],
)
def test_own_format_with_bad_keys_names_the_key(tmp_path, edit, pattern):
    model = build_model("mlp", hidden=[4])
    path = save_checkpoint(tmp_path / "a.pt", model, model_spec=ModelSpec("mlp", {"hidden": [4]}))
    obj = torch.load(path, weights_only=True)
    assert obj["format"] == FORMAT_NAME
    edit(obj)
    torch.save(obj, path)
    with pytest.raises(CheckpointError, match=pattern):
        load_checkpoint(path)


# -- MNIST files --------------------------------------------------------------------------------


def _idx(arr: np.ndarray) -> bytes:
    return (
        struct.pack(">BBBB", 0, 0, 8, arr.ndim)
        + struct.pack(">" + "I" * arr.ndim, *arr.shape)
        + arr.tobytes()
    )


def write_mnist(folder, n_images=3, n_labels=3, images_bytes=None, labels_gz=None):
    """A tiny MNIST folder; overrides plant one damaged file."""
    folder.mkdir(parents=True, exist_ok=True)
    imgs = np.zeros((n_images, 28, 28), dtype=np.uint8)
    (folder / "train-images-idx3-ubyte").write_bytes(images_bytes if images_bytes is not None else _idx(imgs))
    labels = _idx(np.arange(n_labels, dtype=np.uint8) % 10)
    if labels_gz is None:
        (folder / "train-labels-idx1-ubyte").write_bytes(labels)
    else:
        (folder / "train-labels-idx1-ubyte.gz").write_bytes(labels_gz)
    return folder


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        pytest.param({"images_bytes": b"\x00\x00\x08\x03\x00\x00"}, "short header", id="short-header"),
        pytest.param({"images_bytes": b"\x00"}, "not an IDX file", id="three-bytes"),
        pytest.param({"images_bytes": b"PK\x03\x04" + bytes(40)}, "bad magic", id="bad-magic"),
        pytest.param({"labels_gz": b"\x1f\x8b not really gzip"}, "not a valid gzip file", id="bad-gz"),
        pytest.param(
            {"labels_gz": gzip.compress(_idx(np.arange(3, dtype=np.uint8)))[:-12]},
            "not a valid gzip file",
            id="truncated-gz",
        ),
        pytest.param({"n_labels": 2}, "holds 3 images but .*holds 2 labels", id="count-mismatch"),
        pytest.param(
            {"images_bytes": _idx(np.zeros((3, 28, 28), dtype=np.uint8))[:-5]}, "truncated", id="truncated"
        ),
    ],
)
def test_damaged_mnist_files_are_named(tmp_path, kwargs, pattern):
    folder = write_mnist(tmp_path / "mnist", **kwargs)
    with pytest.raises(DataError, match=f"mnist: .*{pattern}"):
        load_dataset(DataSpec("mnist", data_dir=str(folder)))


def test_good_gzipped_mnist_still_loads(tmp_path):
    labels = np.array([4, 1, 9], dtype=np.uint8)
    folder = write_mnist(tmp_path / "mnist", labels_gz=gzip.compress(_idx(labels)))
    ds = load_dataset(DataSpec("mnist", data_dir=str(folder)))
    assert ds.tensors[1].tolist() == [4, 1, 9]


# -- item 7: dataset factories ------------------------------------------------------------------

FACTORIES = """
import torch
from torch.utils.data import TensorDataset

def _data(n, value):
    return TensorDataset(torch.full((n, 1, 8, 8), float(value)), torch.zeros(n, dtype=torch.int64))

def with_split(split="train"):
    return _data(5 if split == "train" else 3, 1 if split == "train" else 2)

def with_kwargs(**kwargs):
    return _data(4 if kwargs["split"] == "train" else 2, 0)

def without_split():
    return _data(6, 7)

def broken(split="train"):
    raise TypeError("a bug inside the factory")
"""


@pytest.fixture
def factories(tmp_path, monkeypatch):
    (tmp_path / "i8_factories.py").write_text(FACTORIES)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "i8_factories"
    sys.modules.pop("i8_factories", None)


def test_factory_with_split_gets_each_split(factories):
    assert len(load_dataset(DataSpec(f"{factories}:with_split", split="train"))) == 5
    assert len(load_dataset(DataSpec(f"{factories}:with_split", split="test"))) == 3
    assert len(load_dataset(DataSpec(f"{factories}:with_kwargs", split="test"))) == 2


def test_factory_without_split_has_no_test_split(factories):
    """Before: the test split silently got the training data."""
    train = load_dataset(DataSpec(f"{factories}:without_split", split="train"))
    assert len(train) == 6
    with pytest.raises(NoSplitError, match="takes no 'split' parameter.*split='test'"):
        load_dataset(DataSpec(f"{factories}:without_split", split="test"))
    assert issubclass(NoSplitError, DataError)


def test_type_error_inside_a_factory_is_not_hidden(factories):
    """Before: the TypeError made the loader call the factory again without split."""
    with pytest.raises(TypeError, match="a bug inside the factory"):
        load_dataset(DataSpec(f"{factories}:broken"))


# -- item 6: subsets ----------------------------------------------------------------------------


def test_subset_larger_than_the_data_warns_and_records_what_was_used():
    spec = DataSpec("digits", subset=2048)
    with pytest.warns(SubsetSizeWarning, match="subset=2048 is more than the 1438 examples"):
        ds = load_dataset(spec)
    assert len(ds) == 1438 and spec.subset == 1438 and spec.to_dict()["subset"] == 1438
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = load_dataset(DataSpec("digits", subset=spec.subset))  # redoing it: same data, no warning
    assert torch.equal(again.tensors[0], ds.tensors[0])


def test_objective_records_the_subset_used(cnn_checkpoint):
    with pytest.warns(SubsetSizeWarning):
        objective, _, spec = objective_from_checkpoint(cnn_checkpoint, samples=5000, device="cpu")
    assert objective.num_samples == 1438 and spec.subset == 1438


@pytest.mark.parametrize("samples", [0, -3, 2.5, True], ids=["zero", "negative", "float", "bool"])
def test_samples_must_be_a_positive_integer(samples):
    with pytest.raises(ConfigError, match=f"samples={samples!r} must be a positive number"):
        resolve_data_spec(None, samples=samples)


# -- labels out of range ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("label", "pattern"),
    [
        pytest.param(13, r"label 13 but the model outputs 10 classes \(labels 0..9\).*at least 14", id="13"),
        pytest.param(-1, r"label -1 but class labels must be 0..9", id="negative"),
    ],
)
def test_labels_out_of_range_name_the_label_and_the_class_count(label, pattern):
    from torch.utils.data import Subset, TensorDataset

    model = build_model("mlp", hidden=[4])
    y = torch.tensor([0, 3, label, 1])
    ds = TensorDataset(torch.randn(4, 1, 8, 8), y)
    with pytest.raises(DataError, match=pattern):
        check_labels_fit(model, ds)
    with pytest.raises(DataError, match=pattern):
        check_labels_fit(model, Subset(ds, [1, 2]))
    check_labels_fit(model, Subset(ds, [0, 1]))  # the subset leaves the bad label out


def test_label_check_leaves_batch_norm_and_mode_alone(cnn_checkpoint):
    from torch.utils.data import TensorDataset

    net, _ = load_model(cnn_checkpoint)
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    check_labels_fit(net, TensorDataset(torch.randn(3, 1, 8, 8), torch.tensor([0, 9, 2])))
    assert net.training
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


# -- item 10: file modes and write errors -------------------------------------------------------


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077], ids=["022", "002", "077"])
def test_outputs_get_the_umask_mode_like_open(tmp_path, mask):
    """Before: every output was 0600 (mkstemp), unreadable by the group on a shared cluster."""
    old = os.umask(mask)
    try:
        assert current_umask() == mask
        with open(tmp_path / "plain.txt", "w") as fh:
            fh.write("x")
        paths = [
            atomic_write_json(tmp_path / "r.json", {"a": 1}),
            atomic_save_npz(tmp_path / "r.npz", a=np.zeros(2)),
            atomic_torch_save({"a": torch.zeros(1)}, tmp_path / "r.pt"),
        ]
    finally:
        os.umask(old)
    expected = 0o666 & ~mask
    assert (os.stat(tmp_path / "plain.txt").st_mode & 0o777) == expected
    for p in paths:
        assert (os.stat(p).st_mode & 0o777) == expected, p


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        pytest.param(errno.ENOSPC, "no space left on the device", id="ENOSPC"),
        pytest.param(errno.EROFS, "the file system is read-only", id="EROFS"),
        pytest.param(errno.EACCES, "permission denied", id="EACCES"),
    ],
)
@pytest.mark.parametrize("where", ["create", "write", "rename"])
def test_write_errors_name_the_target_and_leave_nothing(tmp_path, monkeypatch, code, reason, where):
    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code), str(tmp_path / ".hidden.tmp"))

    if where == "create":
        monkeypatch.setattr(atomic.tempfile, "mkstemp", fail)
    elif where == "rename":
        monkeypatch.setattr(atomic.os, "replace", fail)
    target = tmp_path / "result.json"
    with pytest.raises(OutputWriteError, match=rf"cannot write '{target}': {reason} \[Errno {code}\]"):
        if where == "write":  # the disk fills up half-way through the writer
            atomic.atomic_write(target, lambda fh: (fh.write(b"partial"), fail()))
        else:
            atomic_write_json(target, {"a": 1})
    assert not target.exists() and not list(tmp_path.glob(".result.json.*"))


def test_other_os_errors_are_not_renamed(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(atomic.os, "replace", fail)
    with pytest.raises(OSError, match="I/O error") as info:
        atomic_write_json(tmp_path / "r.json", {})
    assert not isinstance(info.value, OutputWriteError)
