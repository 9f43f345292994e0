"""``landscape sharpness``: the JSON contract, files written, errors (through CliRunner and once
through a real subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from landscape.cli.main import cli
from landscape.hessian import top_eigenpairs
from landscape.objective.loading import objective_from_checkpoint

torch.set_num_threads(1)  # tiny problems: threads only contend with other test workers

BASE = ["--samples", "48", "--batch-size", "20", "--dtype", "float64", "--device", "cpu", "--tol", "1e-9"]
CONTRACT = {
    "eigenvalues",
    "residuals",
    "trace",
    "matvecs",
    "samples",
    "seed",
    "device",
    "dtype",
    "bn_mode",
    "seconds",
}


def _run(args: list[str]) -> tuple[int, str, str]:
    res = CliRunner().invoke(cli, args)
    return res.exit_code, res.stdout, res.stderr


def test_json_contract_and_values(cnn_checkpoint, tmp_path) -> None:
    out = tmp_path / "out"
    code, stdout, stderr = _run(
        [
            "sharpness",
            str(cnn_checkpoint),
            *BASE,
            "--top-k",
            "3",
            "--trace",
            "--trace-matvecs",
            "30",
            "--json",
            "-o",
            str(out),
        ]
    )
    assert code == 0, stderr
    doc = json.loads(stdout)
    assert set(doc) >= CONTRACT
    assert json.loads((out / "sharpness.json").read_text()) == doc
    ev = doc["eigenvalues"]
    assert len(ev) == 3 and ev == sorted(ev, reverse=True)
    assert set(doc["trace"]) >= {"estimate", "stderr", "matvecs", "method"}
    assert doc["trace"]["method"] == "hutch++" and doc["trace"]["matvecs"] == 30
    assert doc["matvecs"] == doc["eigen_matvecs"] + 30
    assert (doc["samples"], doc["seed"], doc["device"], doc["dtype"], doc["bn_mode"]) == (
        48,
        0,
        "cpu",
        "float64",
        "eval",
    )
    obj, _, _ = objective_from_checkpoint(
        cnn_checkpoint, samples=48, batch_size=20, device="cpu", dtype=torch.float64
    )
    ref = top_eigenpairs(obj, 3, tol=1e-10)
    np.testing.assert_allclose(ev, ref.eigenvalues, rtol=1e-8)


def test_table_density_and_per_layer(cnn_checkpoint, tmp_path) -> None:
    code, stdout, stderr = _run(
        [
            "sharpness",
            str(cnn_checkpoint),
            *BASE,
            "--top-k",
            "1",
            "--density",
            "--density-runs",
            "2",
            "--density-steps",
            "8",
            "--per-layer",
            "--per-layer-by",
            "module",
            "--per-batch",
            "2",
            "-o",
            str(tmp_path),
        ]
    )
    assert code == 0, stderr
    assert "lambda_1" in stdout and "per-batch (2 x 20)" in stdout and "matvecs" in stdout
    with np.load(tmp_path / "density.npz") as z:
        assert z["nodes"].shape == (2, 8)
        assert np.trapezoid(z["density"], z["grid"]) == pytest.approx(1.0, abs=1e-6)
    assert (tmp_path / "density.png").stat().st_size > 0
    doc = json.loads((tmp_path / "sharpness.json").read_text())
    assert doc["trace"] is None
    assert [e["name"] for e in doc["per_layer"]["layers"]][0].startswith("features.")
    assert len(doc["per_batch"]["eigenvalues"]) == 2


def test_pyhessian_backend(cnn_checkpoint) -> None:
    pytest.importorskip("pyhessian")
    code, stdout, stderr = _run(
        [
            "sharpness",
            str(cnn_checkpoint),
            *BASE,
            "--top-k",
            "1",
            "--tol",
            "1e-4",
            "--backend",
            "pyhessian",
            "--json",
        ]
    )
    assert code == 0, stderr
    doc = json.loads(stdout)
    assert doc["backend"] == "pyhessian" and doc["eigen_matvecs"] >= 2
    assert doc["residuals"] == [None]  # power iteration reports no Ritz residual


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--top-k", "0"], "top_k=0"),
        (["--trace-rtol", "-1"], "trace_rtol=-1"),
        (["--samples", "0"], "--samples 0"),
        (["--eigen-block", "two"], "--eigen-block 'two' is not valid"),
        (["--eigen-block", "0"], "--eigen-block 0 is not valid"),
    ],
    ids=["top-k", "trace-rtol", "samples", "eigen-block-word", "eigen-block-zero"],
)
def test_bad_options_give_one_line_error(cnn_checkpoint, args: list[str], match: str) -> None:
    code, _, stderr = _run(["sharpness", str(cnn_checkpoint), "--device", "cpu", *args])
    assert code == 1
    assert stderr.startswith("error: ") and match in stderr and stderr.count("\n") == 1


@pytest.mark.parametrize("block", ["3", "auto"], ids=["block3", "auto"])
def test_eigen_block_gives_the_same_eigenvalues(cnn_checkpoint, tmp_path, block: str) -> None:
    out = tmp_path / "out"
    code, stdout, stderr = _run(
        [
            "sharpness",
            str(cnn_checkpoint),
            *BASE,
            "--top-k",
            "4",
            "--eigen-block",
            block,
            "--json",
            "-o",
            str(out),
        ]
    )
    assert code == 0, stderr
    doc = json.loads(stdout)
    obj, _, _ = objective_from_checkpoint(
        cnn_checkpoint, samples=48, batch_size=20, device="cpu", dtype=torch.float64
    )
    np.testing.assert_allclose(doc["eigenvalues"], top_eigenpairs(obj, 4, tol=1e-10).eigenvalues, rtol=1e-8)
    blocked = block == "3"  # 'auto' is single-vector Lanczos (the benchmark's finding)
    assert doc["settings"].get("eigen_block") == (3 if blocked else None)
    assert any("block Lanczos, blocks of 3" in n for n in doc["notes"]) == blocked


def test_subprocess_json(cnn_checkpoint) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "landscape",
            "sharpness",
            str(cnn_checkpoint),
            *BASE,
            "--top-k",
            "2",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert len(doc["eigenvalues"]) == 2 and doc["samples"] == 48


def test_which_sa_lists_the_most_negative_first(cnn_checkpoint) -> None:
    args = ["sharpness", str(cnn_checkpoint), *BASE, "--which", "SA", "--top-k", "3"]
    code, stdout, stderr = _run([*args, "--json"])
    assert code == 0, stderr
    ev = json.loads(stdout)["eigenvalues"]
    obj, _, _ = objective_from_checkpoint(
        cnn_checkpoint, samples=48, batch_size=20, device="cpu", dtype=torch.float64
    )
    ref = top_eigenpairs(obj, 3, which="SA", tol=1e-10)
    assert ev[0] < 0 and ev == sorted(ev)
    np.testing.assert_allclose(ev, ref.eigenvalues, rtol=1e-7)
    code, table, _ = _run(args)
    shown = [float(line.split()[1]) for line in table.splitlines() if line.startswith("lambda_")]
    np.testing.assert_allclose(shown, ev, rtol=1e-5)  # the table prints 6 significant digits


SMALL = ["--samples", "32", "--batch-size", "16", "--device", "cpu", "-q"]
DENSITY = ["--density", "--density-runs", "1", "--density-steps", "4"]


def test_other_settings_are_refused_and_overwrite_removes_stale_companions(cnn_checkpoint, tmp_path) -> None:
    out = tmp_path / "out"
    first = ["sharpness", str(cnn_checkpoint), *SMALL, "--top-k", "2", *DENSITY, "-o", str(out)]
    assert _run(first)[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert set(before) == {"sharpness.json", "density.npz", "density.png"}
    other = ["sharpness", str(cnn_checkpoint), *SMALL, "--top-k", "1", "-o", str(out)]
    code, _, stderr = _run(other)
    assert code == 1 and stderr.count("\n") == 1
    assert "was made with other settings (differs in: density, top_k)" in stderr and "--overwrite" in stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing touched
    # another checkpoint is other weights, even with the same options
    moved = tmp_path / "moved.pt"
    moved.write_bytes(cnn_checkpoint.read_bytes())
    assert _run(["sharpness", str(moved), *first[2:]])[0] == 0  # same weights: the same result
    other_weights = tmp_path / "other.pt"
    from landscape.data.datasets import DataSpec
    from landscape.models.builders import ModelSpec, build_model
    from landscape.models.checkpoints import save_checkpoint

    torch.manual_seed(1)
    save_checkpoint(
        other_weights,
        build_model("cnn", width=4),
        model_spec=ModelSpec("cnn", {"width": 4}),
        data_spec=DataSpec("digits"),
    )
    code, _, stderr = _run(["sharpness", str(other_weights), *first[2:]])
    assert code == 1 and "differs in: checkpoint_digest" in stderr
    code, _, stderr = _run([*other, "--overwrite"])
    assert code == 0, stderr
    assert {p.name for p in out.iterdir()} == {"sharpness.json"}  # no density of another result
    doc = json.loads((out / "sharpness.json").read_text())
    assert doc["density"] is None and len(doc["eigenvalues"]) == 1
    assert doc["settings"]["top_k"] == 1 and doc["settings"]["checkpoint_digest"] == doc["checkpoint_digest"]
    assert _run(other)[0] == 0  # the same settings again: a rerun, not a replacement


def test_stray_companions_without_their_json_are_refused(cnn_checkpoint, tmp_path) -> None:
    (tmp_path / "density.png").write_bytes(b"not ours to replace")
    code, _, stderr = _run(["sharpness", str(cnn_checkpoint), *SMALL, "--top-k", "1", "-o", str(tmp_path)])
    assert code == 1 and "holds density.png of another result" in stderr and "--overwrite" in stderr
    assert (tmp_path / "density.png").read_bytes() == b"not ours to replace"


def test_an_interrupted_run_still_resumes_its_stages(cnn_checkpoint, tmp_path, monkeypatch) -> None:
    import importlib

    from landscape.analysis.result_file import STAGE_FOLDER

    sharpness_module = importlib.import_module("landscape.analysis.pipeline")
    out = tmp_path / "out"
    args = ["sharpness", str(cnn_checkpoint), *SMALL, "--top-k", "1", *DENSITY, "--json", "-o", str(out)]

    def killed(*a, **k):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(sharpness_module, "slq", killed)
        assert _run(args)[0] == 130
    assert (out / STAGE_FOLDER / "eigen.key.json").is_file() and not (out / "sharpness.json").exists()
    code, stdout, stderr = _run(args)  # the same command again: resumed, not refused
    assert code == 0, stderr
    assert json.loads(stdout)["notes"] == ["stages read back from an interrupted run: eigen"]
    assert (out / "density.npz").is_file() and not (out / STAGE_FOLDER).exists()


MEASURE = ["--measure", "average,overlap", "--mc-samples", "4", "--rho", "0.02"]


def test_measures_in_the_json_and_the_table(cnn_checkpoint, tmp_path) -> None:
    from landscape.measures import MeasureOptions, compute_measures

    out = tmp_path / "out"
    base = ["sharpness", str(cnn_checkpoint), *BASE, "--top-k", "5", *MEASURE]
    code, stdout, stderr = _run([*base, "--json", "-o", str(out)])
    assert code == 0, stderr
    doc = json.loads(stdout)
    assert list(doc["measures"]) == ["average", "overlap"]
    assert doc["settings"]["measures"]["names"] == ["average", "overlap"]
    assert doc["settings"]["measures"]["options"]["rho"] == 0.02
    obj, _, _ = objective_from_checkpoint(
        cnn_checkpoint, samples=48, batch_size=20, device="cpu", dtype=torch.float64
    )
    ref = compute_measures(obj, ["average", "overlap"], MeasureOptions(mc_samples=4, rho=0.02, seed=0))
    average = doc["measures"]["average"]
    assert average["value"] == pytest.approx(ref["average"].value, rel=1e-10)
    assert average["stderr"] == pytest.approx(ref["average"].stderr, rel=1e-10)
    assert average["settings"]["rho"] == 0.02 and average["seed"] == 0
    overlap = doc["measures"]["overlap"]
    assert overlap["cost"]["hvps"] == 0  # the eigen stage's vectors, not a Lanczos run of its own
    assert overlap["value"] == pytest.approx(ref["overlap"].value, rel=1e-4)  # its own Lanczos (tol 1e-6)
    code, table, stderr = _run(base)
    assert code == 0, stderr
    row = next(line for line in table.splitlines() if "measure average" in line)
    assert f"{average['value']:.6g} +- {average['stderr']:.6g}" in row
    assert "measure overlap" in table


def test_measures_resume_per_measure_and_decide_replacement(cnn_checkpoint, tmp_path, monkeypatch) -> None:
    import landscape.measures

    out = tmp_path / "out"
    args = ["sharpness", str(cnn_checkpoint), *SMALL, "--top-k", "5", *MEASURE, "--json", "-o", str(out)]
    real = landscape.measures.compute_measures

    def killed_at_overlap(objective, names, *a, **k):
        if list(names) == ["overlap"]:
            raise KeyboardInterrupt
        return real(objective, names, *a, **k)

    with monkeypatch.context() as m:
        m.setattr(landscape.measures, "compute_measures", killed_at_overlap)
        assert _run(args)[0] == 130
    code, stdout, stderr = _run(args)
    assert code == 0, stderr
    doc = json.loads(stdout)
    assert doc["notes"] == ["stages read back from an interrupted run: eigen, measure-average"]
    assert doc["measures"]["overlap"]["cost"]["hvps"] > 0  # eigen was read back: no vectors to reuse
    code, _, stderr = _run([*args[:-3], "--rho", "0.03", "--json", "-o", str(out)])
    assert code == 1 and "differs in: measures" in stderr and "--overwrite" in stderr


def test_an_unknown_measure_is_one_line(cnn_checkpoint) -> None:
    code, _, stderr = _run(["sharpness", str(cnn_checkpoint), *SMALL, "--measure", "worst,sharpest"])
    assert code == 1 and stderr.count("\n") == 1
    assert "measure 'sharpest' is not known; choose from worst, average" in stderr


BLOCKS = ["--blocks", "auto", "--density-runs", "1", "--density-steps", "6"]


def test_blocks_auto_writes_the_blocks_entry_and_figure(cnn_checkpoint, tmp_path) -> None:
    from landscape.hessian.blocks import block_spectra

    out = tmp_path / "out"
    args = ["sharpness", str(cnn_checkpoint), *BASE, "--top-k", "2", *BLOCKS, "-o", str(out)]
    code, stdout, stderr = _run(args)
    assert code == 0, stderr
    assert "blocks: mean JS distance" in stdout and "features" in stdout and "product / attention" in stdout
    doc = json.loads((out / "sharpness.json").read_text())
    blocks = doc["blocks"]
    assert [b["name"] for b in blocks["blocks"]] == ["features", "head"] and blocks["selection"] == "auto"
    assert doc["settings"]["blocks"] == "auto" and "hvp" not in doc["settings"]  # the default product
    assert doc["hvp_info"]["hvp"] == "exact" and doc["hvp_info"]["attention_backend"] == "math"
    obj, _, _ = objective_from_checkpoint(
        cnn_checkpoint, samples=48, batch_size=20, device="cpu", dtype=torch.float64
    )
    ref = block_spectra(obj, "auto", top_k=2, tol=1e-9, runs=1, steps=6)
    np.testing.assert_allclose(blocks["js_distance"], ref.js_distance, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(blocks["blocks"][1]["eigenvalues"], ref.blocks[1].eigenvalues, rtol=1e-9)
    assert (out / "blocks.png").read_bytes()[:4] == b"\x89PNG"
    # the same folder without --blocks: another result, and its figure goes with the old one
    plain = ["sharpness", str(cnn_checkpoint), *BASE, "--top-k", "2", "-o", str(out), "--overwrite"]
    assert _run(plain)[0] == 0 and not (out / "blocks.png").exists()


def test_hvp_finite_difference_is_recorded(tmp_path) -> None:
    from landscape.data.datasets import DataSpec
    from landscape.models.builders import ModelSpec, build_model
    from landscape.models.checkpoints import save_checkpoint

    # a smooth model: central differences across a ReLU or max-pool kink are not the Hessian
    kwargs = {"hidden": [6], "activation": "tanh"}
    path = tmp_path / "mlp.pt"
    save_checkpoint(
        path, build_model("mlp", **kwargs), model_spec=ModelSpec("mlp", kwargs), data_spec=DataSpec("digits")
    )
    base = ["sharpness", str(path), *SMALL, "--top-k", "1", "--dtype", "float64", "--json"]
    code, stdout, stderr = _run([*base, "--hvp", "finite-difference"])
    assert code == 0, stderr
    doc = json.loads(stdout)
    assert doc["hvp_info"]["hvp"] == "finite-difference" and doc["settings"]["hvp"] == "finite-difference"
    exact = json.loads(_run(base)[1])
    np.testing.assert_allclose(doc["eigenvalues"], exact["eigenvalues"], rtol=1e-6)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        pytest.param(["--blocks", "nothing.*"], "--blocks nothing.* matches no parameter", id="glob"),
        pytest.param(["--hvp", "approx"], "Invalid value for '--hvp'", id="hvp"),
    ],
)
def test_bad_blocks_and_hvp_are_one_line(cnn_checkpoint, args: list[str], match: str) -> None:
    code, _, stderr = _run(["sharpness", str(cnn_checkpoint), "--device", "cpu", "--top-k", "1", *args])
    assert code != 0 and match in stderr


def test_an_interrupted_blocks_run_resumes(cnn_checkpoint, tmp_path, monkeypatch) -> None:
    import importlib

    from landscape.analysis.result_file import STAGE_FOLDER

    pipeline = importlib.import_module("landscape.analysis.pipeline")
    out = tmp_path / "out"
    args = ["sharpness", str(cnn_checkpoint), *SMALL, "--top-k", "1", *BLOCKS, "--json", "-o", str(out)]

    def killed(*a, **k):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(pipeline, "block_spectra", killed)
        assert _run(args)[0] == 130
    assert (out / STAGE_FOLDER / "eigen.key.json").is_file() and not (out / "blocks.png").exists()
    code, stdout, stderr = _run(args)
    assert code == 0, stderr
    doc = json.loads(stdout)
    assert doc["notes"] == ["stages read back from an interrupted run: eigen"]
    assert [b["name"] for b in doc["blocks"]["blocks"]] == ["features", "head"]
    assert (out / "blocks.png").is_file() and not (out / STAGE_FOLDER).exists()
