"""Bad input/output through the real entry point: one line naming the value and the fix, non-zero exit.

Each case runs ``landscape.cli.main:main`` (the installed ``landscape`` entry point, which also turns usage errors
into one line) inside ``CliRunner``. The cases handled before this table are in
tests/cli/test_foundation_cli.py: missing/directory/truncated/random-bytes checkpoints (46 cases), wrong
architecture, unknown model, malformed --model-kwargs, unknown dataset, missing --data-dir, absent
device, zero --samples, planted pickles and usage errors (bad choice, unknown command, missing argument).
"""

from __future__ import annotations

import errno
import gzip
import json
import os
import struct
import sys
from collections.abc import Callable
from pathlib import Path

import click
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from landscape.data.datasets import DataSpec
from landscape.models.builders import ModelSpec, build_model
from landscape.models.checkpoints import save_checkpoint


class _EntryPoint(click.Command):
    """Lets CliRunner run ``main()`` itself, so usage errors get the entry point's one-line form."""

    def main(self, args=None, prog_name=None, **extra):  # type: ignore[override]
        from landscape.cli.main import main

        sys.argv = ["landscape", *(args or [])]
        main()


def run(*args: object):
    return CliRunner().invoke(_EntryPoint("landscape"), [str(a) for a in args], catch_exceptions=False)


class _Reduce:
    def __init__(self, func, args) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


def _idx(arr: np.ndarray) -> bytes:
    return (
        struct.pack(">BBBB", 0, 0, 8, arr.ndim)
        + struct.pack(">" + "I" * arr.ndim, *arr.shape)
        + arr.tobytes()
    )


def _mnist(folder: Path, images: bytes, labels: bytes, labels_name: str = "train-labels-idx1-ubyte") -> None:
    folder.mkdir()
    (folder / "train-images-idx3-ubyte").write_bytes(images)
    (folder / labels_name).write_bytes(labels)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Every file the cases need, made once (all tiny)."""
    w = tmp_path_factory.mktemp("io_world")
    cnn = build_model("cnn", width=4)
    save_checkpoint(
        w / "cnn.pt", cnn, model_spec=ModelSpec("cnn", {"width": 4}), data_spec=DataSpec("digits")
    )

    mlp = build_model("mlp", hidden=[4])
    torch.save(mlp.state_dict(), w / "mlp.pt")
    sd = {k: v.clone() for k, v in mlp.state_dict().items()}
    sd["net.1.weight"] = (sd["net.1.weight"] * 10).to(torch.int32)
    from safetensors.torch import save_file

    save_file(sd, str(w / "int.safetensors"))

    np.savez(w / "labels13.npz", x=np.zeros((4, 1, 8, 8), np.float32), y=np.array([0, 13, 2, 1]))

    own = torch.load(w / "cnn.pt", weights_only=True)
    torch.save({k: v for k, v in own.items() if k != "state_dict"}, w / "nostate.pt")
    torch.save({**own, "model": "cnn"}, w / "strmodel.pt")

    # os.system(12345) only raises TypeError: nothing runs even if it were ever called.
    torch.save({"state_dict": {"w": torch.zeros(1)}, "x": _Reduce(os.system, (12345,))}, w / "evil.pt")

    images = _idx(np.zeros((3, 28, 28), np.uint8))
    labels = _idx(np.arange(3, dtype=np.uint8))
    _mnist(w / "mnist_short", b"\x00\x00\x08\x03\x00\x00\x00", labels)
    _mnist(w / "mnist_badgz", images, b"\x1f\x8bnot gzip", "train-labels-idx1-ubyte.gz")
    _mnist(w / "mnist_counts", images, _idx(np.arange(2, dtype=np.uint8)))
    _mnist(w / "mnist_ok_gz", images, gzip.compress(labels), "train-labels-idx1-ubyte.gz")
    return w


def _raise_os_error(code: int) -> Callable[..., None]:
    def fail(*args: object, **kwargs: object) -> None:
        raise OSError(code, os.strerror(code))

    return fail


def _patch_mkstemp(code: int):
    return lambda mp: mp.setattr("landscape.io.atomic.tempfile.mkstemp", _raise_os_error(code))


def _patch_replace(code: int):
    return lambda mp: mp.setattr("landscape.io.atomic.os.replace", _raise_os_error(code))


def _patch_cli_writer(code: int):
    """An OSError from outside the atomic writers reaches the CLI's handler, which names its path."""

    def fail(path: object, obj: object) -> None:
        raise OSError(code, os.strerror(code), str(path))

    return lambda mp: mp.setattr("landscape.runs.evaluation.atomic_write_json", fail)


def _skip_label_check(mp) -> None:
    """Datasets the pre-check cannot see (not in memory) meet torch's own error: mapped too."""
    mp.setattr("landscape.objective.loading.check_labels_fit", lambda model, dataset: None)


EV = ("evaluate",)
# (command line given the world folder, fragments of the one line, exit status, optional patch)
CASES = {
    # item 4: integer weights for floating parameters
    "int-safetensors-info": (
        lambda w: ("info", w / "int.safetensors", "--model", "mlp", "--model-kwargs", '{"hidden": [4]}'),
        ("net.1.weight (int32)", "floating point"),
    ),
    "int-safetensors-evaluate": (
        lambda w: (*EV, w / "int.safetensors", "--model", "mlp", "--model-kwargs", '{"hidden": [4]}'),
        ("net.1.weight (int32)", "int.safetensors"),
    ),
    # item 6: --samples
    "samples-zero": (lambda w: (*EV, w / "cnn.pt", "--samples", "0"), ("--samples 0", "positive", "omit it")),
    "samples-negative": (lambda w: (*EV, w / "cnn.pt", "--samples", "-4"), ("--samples -4", "positive")),
    "samples-zero-sharpness": (lambda w: ("sharpness", w / "cnn.pt", "--samples", "0"), ("--samples 0",)),
    # labels the model has no output for
    "label-13": (
        lambda w: (
            *EV,
            w / "mlp.pt",
            "--model",
            "mlp",
            "--model-kwargs",
            '{"hidden": [4]}',
            "--data",
            w / "labels13.npz",
        ),
        ("label 13", "outputs 10 classes", "labels 0..9", """--model-kwargs '{"num_classes": 14}'"""),
    ),
    "label-13-torch-error": (
        lambda w: (
            *EV,
            w / "mlp.pt",
            "--model",
            "mlp",
            "--model-kwargs",
            '{"hidden": [4]}',
            "--data",
            w / "labels13.npz",
        ),
        ("label 13", "no output for", "--model-kwargs"),
        1,
        _skip_label_check,
    ),
    # MNIST folders
    "mnist-short-header": (
        lambda w: (*EV, w / "cnn.pt", "--data", "mnist", "--data-dir", w / "mnist_short"),
        ("train-images-idx3-ubyte", "short header", "download it again"),
    ),
    "mnist-bad-gz": (
        lambda w: (*EV, w / "cnn.pt", "--data", "mnist", "--data-dir", w / "mnist_badgz"),
        ("train-labels-idx1-ubyte.gz", "not a valid gzip file"),
    ),
    "mnist-count-mismatch": (
        lambda w: (*EV, w / "cnn.pt", "--data", "mnist", "--data-dir", w / "mnist_counts"),
        ("holds 3 images", "holds 2 labels", "train-labels-idx1-ubyte"),
    ),
    # our format with bad keys
    "own-format-no-state-dict": (lambda w: ("info", w / "nostate.pt"), ("nostate.pt", "no 'state_dict' key")),
    "own-format-no-state-dict-evaluate": (lambda w: (*EV, w / "nostate.pt"), ("no 'state_dict' key",)),
    "own-format-string-model": (
        lambda w: ("info", w / "strmodel.pt"),
        ("strmodel.pt", "key 'model' holds 'cnn'", "--model NAME"),
    ),
    # code-executing pickle: named, and --unsafe-load named with its danger
    "pickle-global-info": (
        lambda w: ("info", w / "evil.pt"),
        (f"'{os.system.__module__}.system'", "--unsafe-load", "executes code from the file"),
    ),
    "pickle-global-evaluate": (lambda w: (*EV, w / "evil.pt"), ("system'", "--unsafe-load")),
    # seeds: 0..2**63-1, integers only (usage errors: exit 2)
    "seed-1e23": (
        lambda w: (*EV, w / "cnn.pt", "--seed", "1e23"),
        ("--seed", "'1e23' is not an integer", "0.."),
    ),
    "seed-float": (lambda w: (*EV, w / "cnn.pt", "--seed", "0.5"), ("--seed", "not an integer"), 2),
    "seed-negative": (lambda w: (*EV, w / "cnn.pt", "--seed", "-1"), ("--seed", "-1 is out of range"), 2),
    "seed-2**63": (
        lambda w: (*EV, w / "cnn.pt", "--seed", str(2**63)),
        ("--seed", "out of range", "2**63-1"),
        2,
    ),
    "seed-train": (lambda w: ("train", "-o", w / "never", "--seed", "1e23"), ("--seed", "not an integer"), 2),
    "seed-compare-magnitude": (
        lambda w: ("compare-magnitude", w, "--seed", "1e23"),
        ("--seed", "not an integer"),
        2,
    ),
    # read-only output, no permission, full disk: the path is named
    "erofs-create": (
        lambda w: (*EV, w / "cnn.pt", "--samples", "8", "-o", w / "ro"),
        ("cannot write", "evaluation.json", "read-only", "Errno 30", "folder you can write to"),
        1,
        _patch_mkstemp(errno.EROFS),
    ),
    "eacces-create": (
        lambda w: (*EV, w / "cnn.pt", "--samples", "8", "-o", w / "ro"),
        ("cannot write", "evaluation.json", "permission denied", "Errno 13"),
        1,
        _patch_mkstemp(errno.EACCES),
    ),
    "enospc-rename": (
        lambda w: (*EV, w / "cnn.pt", "--samples", "8", "-o", w / "full"),
        ("cannot write", "full/evaluation.json", "no space left", "Errno 28", "free some space"),
        1,
        _patch_replace(errno.ENOSPC),
    ),
    "erofs-outside-atomic-writer": (
        lambda w: (*EV, w / "cnn.pt", "--samples", "8", "-o", w / "ro2"),
        ("cannot write", "ro2/evaluation.json", "read-only", "Errno 30"),
        1,
        _patch_cli_writer(errno.EROFS),
    ),
}
CASES["seed-1e23"] = (*CASES["seed-1e23"], 2)


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_bad_input_is_one_clear_line(world, monkeypatch, case):
    build, fragments, *rest = CASES[case]
    code = rest[0] if rest else 1
    if len(rest) > 1:
        rest[1](monkeypatch)
    result = run(*build(world))
    err = result.stderr.strip()
    assert result.exit_code == code, (result.exit_code, result.output)
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert "Traceback" not in result.output and "unexpected" not in err, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


def test_unsafe_load_of_a_failing_pickle_is_honest(tmp_path, monkeypatch):
    """With --unsafe-load, a pickle whose global cannot be imported fails before anything runs."""
    (tmp_path / "i8_cli_vanishing.py").write_text("def payload(path):\n    open(path, 'w').close()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import i8_cli_vanishing

    marker = tmp_path / "ran.txt"
    torch.save({"x": _Reduce(i8_cli_vanishing.payload, (str(marker),))}, tmp_path / "gone.pt")
    del sys.modules["i8_cli_vanishing"]
    (tmp_path / "i8_cli_vanishing.py").unlink()
    refused = run("info", tmp_path / "gone.pt")
    assert refused.exit_code == 1 and "'i8_cli_vanishing.payload'" in refused.stderr
    assert "--unsafe-load" in refused.stderr
    unsafe = run("info", tmp_path / "gone.pt", "--unsafe-load")
    err = unsafe.stderr.strip()
    assert unsafe.exit_code == 1 and len(err.splitlines()) == 1, err
    assert "could not be unpickled even with --unsafe-load" in err and "ModuleNotFoundError" in err, err
    assert "corrupt" not in err
    assert not marker.exists()


def test_samples_beyond_the_data_warn_and_record_what_was_used(world, tmp_path):
    """Before: --samples 2048 on the 1438 digits silently used 1438 and recorded subset: 2048."""
    result = run("evaluate", world / "cnn.pt", "--samples", "2048", "--json", "-o", tmp_path / "ev")
    assert result.exit_code == 0, result.output
    assert (
        result.stderr.strip()
        == "warning: --samples 2048 is more than the 1438 examples of 'digits' (train); using all 1438"
    )
    shown = json.loads(result.stdout)
    saved = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    for doc in (shown, saved):
        assert doc["num_samples"] == 1438 and doc["data"]["subset"] == 1438


def test_good_gzipped_mnist_through_the_cli(world):
    result = run(
        "evaluate", world / "cnn.pt", "--data", "mnist", "--data-dir", world / "mnist_ok_gz", "--json"
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["num_samples"] == 3


@pytest.mark.parametrize(
    ("message", "command", "expected"),
    [
        pytest.param("samples=0 must be positive", "evaluate", "--samples 0 must be positive", id="samples"),
        pytest.param("subset=0 must be positive", "train", "--samples 0 must be positive", id="subset"),
        pytest.param("samples=-5 must be", "compare-magnitude", "--sharpness -5 must be", id="sharpness"),
        pytest.param("pass unsafe_load=True, which", "info", "pass --unsafe-load, which", id="unsafe-load"),
        pytest.param(
            "batch_size=0 must be positive", "sharpness", "--batch-size=0 must be positive", id="batch"
        ),
        pytest.param(
            "needs data_dir pointing at", "evaluate", "needs --data-dir pointing at", id="bare-name"
        ),
        pytest.param(
            "data_dir='/d/data_dir/x' does not exist",
            "evaluate",
            "--data-dir '/d/data_dir/x' does not exist",
            id="name-inside-a-path-untouched",
        ),
        pytest.param("key 'batch_size' is missing", "train", "key 'batch_size' is missing", id="quoted-key"),
        pytest.param("device='tpu' is not valid", "info", "--device='tpu' is not valid", id="device"),
        pytest.param(
            "use shuffle=False or pass allow_nondeterministic=True",
            "sharpness",
            "use shuffle=False or pass --allow-nondeterministic",
            id="switch",
        ),
        pytest.param("points=1 must be >= 2", "connect", "--points 1 must be >= 2", id="command-table"),
        pytest.param("points=1 must be >= 2", "evaluate", "points=1 must be >= 2", id="other-command"),
        pytest.param(
            "pass model='NAME' or model='package.module:factory'",
            "info",
            "pass --model NAME or --model package.module:factory",
            id="model",
        ),
        pytest.param(
            "num_samples=3 and per_batch_samples=2",
            "evaluate",
            "num_samples=3 and per_batch_samples=2",
            id="untouched",
        ),
    ],
)
def test_library_parameter_names_become_flags(message, command, expected):
    from landscape.cli.main import as_flags

    assert as_flags(message, command) == expected
