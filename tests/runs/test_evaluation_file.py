"""``evaluation.json``: the library record the CLI writes, read back with its settings."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from landscape.cli.main import cli
from landscape.errors import ResultFileError
from landscape.io.digest import tensors_digest
from landscape.objective.loading import objective_from_checkpoint
from landscape.runs.evaluation import (
    evaluation_file,
    evaluation_settings,
    read_evaluation_file,
    write_evaluation_file,
)


def test_the_cli_writes_what_the_library_reads(cnn_checkpoint, tmp_path):
    out = tmp_path / "ev"
    r = CliRunner().invoke(
        cli, ["evaluate", str(cnn_checkpoint), "--samples", "32", "--json", "-o", str(out)]
    )
    assert r.exit_code == 0, r.output
    back = read_evaluation_file(out / "evaluation.json")
    assert back.to_dict() == json.loads(r.stdout)
    objective, ckpt, spec = objective_from_checkpoint(cnn_checkpoint, samples=32, device="cpu")
    ev = objective.evaluate()
    assert (back.loss, back.accuracy) == pytest.approx((ev.loss, ev.accuracy), rel=1e-12)
    assert back.values["num_samples"] == 32 and back.seed == 0
    assert back.settings == evaluation_settings(
        ckpt, spec, batch_size=256, dtype=torch.float32, bn_mode="eval"
    )
    assert back.settings["checkpoint_digest"] == tensors_digest(ckpt.state_dict.items())


def test_write_and_read_round_trip(cnn_checkpoint, tmp_path):
    objective, ckpt, spec = objective_from_checkpoint(cnn_checkpoint, samples=16, device="cpu")
    settings = evaluation_settings(ckpt, spec, batch_size=8, dtype=torch.float32, bn_mode="eval")
    record = evaluation_file(objective, settings, checkpoint=cnn_checkpoint, seed=3)
    path = write_evaluation_file(tmp_path, record)
    back = read_evaluation_file(path)
    assert back == record
    doc = json.loads(path.read_text())
    assert doc["data"] == spec.to_dict() and doc["model"] == {"name": "cnn", "kwargs": {"width": 4}}
    assert doc["checkpoint_digest"] == settings["checkpoint_digest"] and doc["seed"] == 3


@pytest.mark.parametrize(
    ("text", "match"),
    [("{bad", "unreadable"), ('{"loss": 1.0}', "without its settings"), ("[]", "not an evaluation.json")],
    ids=["damaged", "no-settings", "not-object"],
)
def test_files_that_are_not_ours_are_refused(tmp_path, text, match):
    (tmp_path / "evaluation.json").write_text(text)
    with pytest.raises(ResultFileError, match=match):
        read_evaluation_file(tmp_path / "evaluation.json")
