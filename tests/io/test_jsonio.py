"""One policy for non-finite floats in every JSON file, and atomic figure saving."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import matplotlib.pyplot as plt  # the Agg backend: tests/conftest.py
import numpy as np
import pytest

from landscape.io.atomic import atomic_write_json, current_umask, save_figure
from landscape.io.jsonio import decode_float, decode_floats, dumps, encode


def _strict_load(text: str):
    """Parse as standard JSON: bare NaN/Infinity tokens are an error."""

    def refuse(token: str):
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=refuse)


def test_the_policy_on_every_container_and_numpy_type(tmp_path):
    doc = {
        "nan": float("nan"),
        "inf": float("inf"),
        "ninf": -math.inf,
        "np": np.float32("nan"),
        "arr": np.array([1.0, np.inf, np.nan]),
        "tuple": (np.int64(3), -np.inf),
        "nested": {1: [float("nan"), 2.5]},
        "path": Path("a/b"),
        "text": "inf",
    }
    path = atomic_write_json(tmp_path / "r.json", doc)
    loaded = _strict_load(path.read_text())
    assert loaded == {
        "nan": None,
        "inf": "inf",
        "ninf": "-inf",
        "np": None,
        "arr": [1.0, "inf", None],
        "tuple": [3, "-inf"],
        "nested": {"1": [None, 2.5]},
        "path": "a/b",
        "text": "inf",
    }
    back = decode_floats(loaded)
    assert back["inf"] == math.inf and back["ninf"] == -math.inf and back["arr"][1] == math.inf
    assert back["nan"] is None  # null stays None: only the field knows it was a NaN
    assert math.isnan(decode_float(loaded["nan"]))


@pytest.mark.parametrize(
    ("stored", "expected"),
    [(None, math.nan), ("inf", math.inf), ("-inf", -math.inf), (2, 2.0), (-0.5, -0.5)],
    ids=["null", "inf", "-inf", "int", "float"],
)
def test_decode_float_reads_back_what_encode_wrote(stored, expected):
    value = decode_float(stored)
    assert (math.isnan(value) and math.isnan(expected)) or value == expected
    if not math.isnan(expected):
        assert encode(expected) == (stored if isinstance(stored, str) else float(stored))


@pytest.mark.parametrize("bad", ["fast", True, [1.0]], ids=["word", "bool", "list"])
def test_decode_float_refuses_what_is_not_a_number(bad):
    with pytest.raises(ValueError, match="expected a number"):
        decode_float(bad)


def test_dumps_refuses_what_json_cannot_hold():
    with pytest.raises(TypeError, match="cannot encode object"):
        dumps({"x": object()})


@pytest.mark.parametrize("fmt", ["png", "pdf"])
def test_save_figure_is_atomic_and_gets_the_umask_mode(tmp_path, fmt):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    path = save_figure(fig, tmp_path / "sub" / f"f.{fmt}")
    plt.close(fig)
    magic = {"png": b"\x89PNG", "pdf": b"%PDF"}[fmt]
    assert path.read_bytes().startswith(magic)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~current_umask()
    assert sorted(p.name for p in path.parent.iterdir()) == [f"f.{fmt}"]  # no temporary file left


def test_save_figure_keeps_the_old_file_when_drawing_fails(tmp_path):
    path = tmp_path / "f.png"
    path.write_bytes(b"old")

    class Broken:
        def savefig(self, fname, **kwargs):
            Path(fname).write_bytes(b"half")
            raise RuntimeError("renderer failed")

    with pytest.raises(RuntimeError, match="renderer failed"):
        save_figure(Broken(), path)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.png"]
