"""The commands analyse a checkpoint at its own precision unless --dtype says otherwise (issue 20,
item 5): a float64 checkpoint in float64, any other in float32, recorded in every result."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from landscape.cli.main import cli
from landscape.data.datasets import DataSpec
from landscape.models.builders import ModelSpec, build_model
from landscape.models.checkpoints import save_checkpoint


def _checkpoint(tmp_path, dtype: torch.dtype):
    torch.manual_seed(0)
    model = build_model("mlp", hidden=(8,), activation="tanh").to(dtype)
    spec = ModelSpec("mlp", {"hidden": [8], "activation": "tanh"})
    return save_checkpoint(tmp_path / f"{dtype}.pt", model, model_spec=spec, data_spec=DataSpec("digits"))


@pytest.mark.parametrize(
    ("dtype", "flag", "expected"),
    [
        (torch.float64, [], "float64"),
        (torch.float32, [], "float32"),
        (torch.float64, ["--dtype", "float32"], "float32"),
    ],
    ids=["float64-own", "float32-own", "float64-asked-float32"],
)
def test_sharpness_and_evaluate_default_to_the_checkpoints_precision(tmp_path, dtype, flag, expected):
    path = _checkpoint(tmp_path, dtype)
    for command in (["sharpness", "--top-k", "1", "--tol", "1e-3"], ["evaluate"]):
        out = tmp_path / command[0]
        args = [*command, str(path), "--samples", "32", "--device", "cpu", *flag, "-o", str(out), "--json"]
        r = CliRunner().invoke(cli, args)
        assert r.exit_code == 0, r.output
        doc = json.loads(r.stdout)
        recorded = doc.get("dtype") or doc.get("objective", {}).get("dtype")
        assert recorded == expected, doc
        assert expected in json.dumps(doc["settings"])
