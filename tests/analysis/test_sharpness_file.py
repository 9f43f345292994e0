"""``sharpness.json``: the one writer and reader round-trip a result with its provenance and density."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from landscape.analysis import SharpnessOptions, sharpness
from landscape.analysis.result_file import (
    DENSITY_FILES,
    STAGE_FOLDER,
    SharpnessFile,
    read_sharpness_file,
    resume_folder,
    sharpness_settings,
    write_sharpness_file,
)
from landscape.errors import ResultFileError
from landscape.io.digest import tensors_digest
from landscape.objective.loading import objective_from_checkpoint


@pytest.fixture
def measured(cnn_checkpoint):
    objective, ckpt, spec = objective_from_checkpoint(
        cnn_checkpoint, samples=24, batch_size=12, device="cpu", dtype=torch.float64
    )
    options = SharpnessOptions(
        top_k=2, tol=1e-8, with_trace=True, trace_matvecs=9, density=True, density_runs=1, density_steps=5
    )
    result = sharpness(objective, options)
    settings = sharpness_settings(options, ckpt, spec, batch_size=12, dtype=torch.float64, bn_mode="eval")
    return SharpnessFile.from_settings(result, settings, checkpoint=cnn_checkpoint), ckpt, spec


def test_settings_fingerprint_the_weights_the_sample_and_the_options(measured):
    record, ckpt, spec = measured
    s = record.settings
    assert s["checkpoint_digest"] == tensors_digest(ckpt.state_dict.items()) == record.checkpoint_digest
    assert s["data"] == spec.to_dict() == record.data and s["data"]["subset"] == 24
    assert (s["top_k"], s["tol"], s["dtype"], s["bn_mode"], s["batch_size"]) == (
        2,
        1e-8,
        "torch.float64",
        "eval",
        12,
    )
    assert s["trace"] == {"method": "hutch++", "matvecs": 9, "rtol": None}
    assert s["density"] == {"runs": 1, "steps": 5} and "measures" not in s and "eigen_block" not in s


def test_write_then_read_gives_the_same_result_and_provenance(measured, tmp_path):
    from matplotlib.figure import Figure

    record, _, _ = measured
    (tmp_path / STAGE_FOLDER).mkdir()  # finished stages of the run: no longer needed once written
    fig = Figure()
    fig.add_subplot().plot([0, 1])
    paths = write_sharpness_file(tmp_path, record, density_figure=fig)
    assert set(paths) == {"sharpness.json", *DENSITY_FILES} and not (tmp_path / STAGE_FOLDER).exists()
    doc = json.loads((tmp_path / "sharpness.json").read_text())
    assert list(doc)[:5] == ["checkpoint", "checkpoint_digest", "data", "batch_size", "world_size"]
    assert list(doc)[-1] == "settings" and doc == json.loads(json.dumps(record.to_dict()))
    back = read_sharpness_file(tmp_path / "sharpness.json")
    assert (back.checkpoint_digest, back.data, back.settings) == (
        record.checkpoint_digest,
        record.data,
        record.settings,
    )
    assert (back.checkpoint, back.batch_size, back.world_size) == (str(record.checkpoint), 12, 1)
    np.testing.assert_array_equal(back.result.eigenvalues, record.result.eigenvalues)
    assert back.result.trace == record.result.trace
    for key in ("nodes", "weights", "grid", "density"):  # read from density.npz beside the JSON
        np.testing.assert_array_equal(getattr(back.result.density, key), getattr(record.result.density, key))
    # a result without density replaces one with: no density file of the other result stays
    record.result.density = None
    assert set(write_sharpness_file(tmp_path, record)) == {"sharpness.json"}
    assert not any((tmp_path / name).exists() for name in DENSITY_FILES)
    assert read_sharpness_file(tmp_path / "sharpness.json").result.density is None


def test_a_density_without_its_npz_reads_as_none(measured, tmp_path):
    record, _, _ = measured
    write_sharpness_file(tmp_path, record)
    assert not (tmp_path / "density.png").exists()  # no figure given, none written
    (tmp_path / "density.npz").write_bytes(b"damaged")
    back = read_sharpness_file(tmp_path / "sharpness.json")
    assert back.result.density is None
    np.testing.assert_array_equal(back.result.eigenvalues, record.result.eigenvalues)


def test_files_that_are_not_ours_are_refused_naming_why(measured, tmp_path):
    record, _, _ = measured
    path = tmp_path / "sharpness.json"
    record.result.save(path)  # the body alone, as the demo wrote it before: no provenance
    with pytest.raises(ResultFileError, match="has no checkpoint digest"):
        read_sharpness_file(path)
    for text, match in (
        ("{not json", "is unreadable"),
        ("[1, 2]", "not a JSON object"),
        ('{"checkpoint_digest": "ab", "eigenvalues": []}', "holds no eigenvalues"),
        ('{"checkpoint_digest": "ab", "eigenvalues": [1.0]}', "is not a sharpness.json written by landscape"),
    ):
        path.write_text(text)
        with pytest.raises(ResultFileError, match=match):
            read_sharpness_file(path)


def test_stages_are_kept_by_one_process_only(tmp_path):
    assert resume_folder(tmp_path) == tmp_path / STAGE_FOLDER
    assert resume_folder(tmp_path, world_size=2) is None
