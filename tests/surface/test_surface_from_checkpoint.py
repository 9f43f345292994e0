"""``surface_from_checkpoint``: the builder registry, inputs refused by parameter name, checkpoints as ends."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from landscape.data.datasets import DataSpec
from landscape.errors import ConfigError
from landscape.models.builders import ModelSpec, build_model
from landscape.models.checkpoints import save_checkpoint
from landscape.surface import (
    DIR_TYPES_1D,
    DIR_TYPES_2D,
    DIRECTION_BUILDERS,
    CheckpointSource,
    surface_from_checkpoint,
)
from landscape.surface.builders import REQUIRED_INPUT
from landscape.surface.from_checkpoint import check_direction_inputs

SOURCE = CheckpointSource(samples=32, batch_size=16, device="cpu", dtype=torch.float64)


def _ckpt(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    model = build_model("cnn", width=4)
    with torch.no_grad():  # distinct running statistics, so each end must carry its own
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    save_checkpoint(path, model, model_spec=ModelSpec("cnn", {"width": 4}), data_spec=DataSpec("digits"))
    return path


def test_every_direction_kind_has_a_builder_and_inputs_name_real_kinds():
    assert set(DIRECTION_BUILDERS) == set(DIR_TYPES_1D) | set(DIR_TYPES_2D)
    assert set(REQUIRED_INPUT) <= set(DIRECTION_BUILDERS)


@pytest.mark.parametrize(
    ("dir_type", "ndim", "given", "match"),
    [
        ("interpolation", 1, {}, r"^to= goes with dir_type='interpolation' \(and interpolation needs to=\)$"),
        ("random", 1, {"to": "b.pt"}, r"^to= goes with dir_type='interpolation'"),
        ("plane", 2, {}, r"^ckpts= goes with dir_type='plane'"),
        ("pca", 2, {}, r"^trajectory= goes with dir_type='pca'"),
        ("plane", 2, {"ckpts": ["b.pt"]}, r"^ckpts= needs exactly two checkpoints \(B and C\), got 1$"),
        ("plane", 1, {"ckpts": ["b.pt", "c.pt"]}, r"^dir_type='plane' is not valid; choose one of 'random'"),
    ],
    ids=["interp-without-to", "to-without-interp", "plane", "pca", "one-ckpt", "plane-1d"],
)
def test_inputs_without_their_kind_are_refused_by_parameter_name(dir_type, ndim, given, match):
    with pytest.raises(ConfigError, match=match) as info:
        check_direction_inputs(dir_type, ndim, **given)
    assert "--" not in str(info.value)  # the library speaks Python; the CLI maps to flags


def test_source_refuses_a_bad_batch_size_by_name():
    with pytest.raises(ConfigError, match=r"^batch_size=0 must be >= 1"):
        CheckpointSource(batch_size=0)


def test_interpolation_ends_are_the_two_checkpoints(tmp_path):
    a, b = _ckpt(tmp_path / "a.pt", 0), _ckpt(tmp_path / "b.pt", 1)
    s = surface_from_checkpoint(
        a, xs=[0.0, 1.0], dir_type="interpolation", to=b, source=SOURCE, out=tmp_path / "s.npz", quiet=True
    )
    ends = [SOURCE.objective(p, seed=0)[0].evaluate() for p in (a, b)]
    np.testing.assert_allclose(s.loss, [e.loss for e in ends], rtol=1e-12)
    assert s.metadata["direction"] == {"kind": "interpolation", "mode": "states", "to": str(b)}
    assert s.metadata["axis_labels"] == ["alpha (0: a, 1: b)", ""]
