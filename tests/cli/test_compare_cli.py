"""``landscape compare-magnitude`` / ``compare``: grouped outputs over seeds through the CLI.

Tiny runs (MLP with 4 hidden units, 32 digits, 1 epoch): 2 methods x 2 seeds. The statistics are
checked against hand computation: with n = 2 the Student-t quantile t_{0.975, 1} is the Cauchy
quantile tan(pi * 0.475), so the interval needs no table.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from landscape.cli.compare_magnitude import compare, compare_magnitude
from landscape.data.datasets import DataSpec
from landscape.models.builders import ModelSpec
from landscape.training.sweep import TrainConfig, train

T_975_1 = math.tan(math.pi * 0.475)  # t_{0.975} with one degree of freedom (Cauchy)


def _config(optimizer: str, seed: int) -> TrainConfig:
    return TrainConfig(
        model=ModelSpec("mlp", {"hidden": [4]}),
        data=DataSpec("digits", subset=32, seed=seed),  # the sample tied to the seed, as train does
        optimizer=optimizer,
        rho=0.05 if optimizer == "sam" else None,
        lr=0.1,
        batch_size=16,
        epochs=1,
        seed=seed,
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    for optimizer in ("sgd", "sam"):
        for seed in (0, 1):
            name = f"{optimizer}_seed{seed}" if optimizer == "sgd" else f"sam_rho0.05_seed{seed}"
            train(_config(optimizer, seed), root / name, quiet=True)
    return root


def _invoke(command, *args: str):
    return CliRunner().invoke(command, [str(a) for a in args])


def _tables(command, *args: str):
    """The command writing its tables only (drawing takes seconds; two tests check the figures)."""
    return _invoke(command, *args, "--no-figures")


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _per_run(out: Path) -> dict[str, dict[str, str]]:
    return {r["run"]: r for r in _rows(out / "comparison.csv")}


def _hand_summary(a: float, b: float) -> tuple[float, float, float, float]:
    mean = (a + b) / 2
    std = abs(a - b) / math.sqrt(2)
    half = T_975_1 * std / math.sqrt(2)
    return mean, std, mean - half, mean + half


def test_grouped_outputs_have_hand_checked_statistics(runs: Path, tmp_path: Path):
    out = tmp_path / "cmp"
    r = _invoke(compare_magnitude, runs, "-o", out)
    assert r.exit_code == 0, r.output
    for name in ("comparison.csv", "comparison.json", "groups.csv", "paired.csv", "groups.md", "groups.png"):
        assert (out / name).is_file(), name
    per_run = _per_run(out)
    groups = {g["group"]: g for g in _rows(out / "groups.csv")}
    assert sorted(groups) == ["SAM rho=0.05", "SGD"]
    for label, prefix in (("SGD", "sgd_seed"), ("SAM rho=0.05", "sam_rho0.05_seed")):
        g = groups[label]
        assert g["n"] == "2" and g["seeds"] == "0 1"
        a, b = (float(per_run[f"{prefix}{s}"]["test_accuracy"]) for s in (0, 1))
        expected = _hand_summary(a, b)
        got = [float(g[f"test_accuracy_{f}"]) for f in ("mean", "std", "ci95_low", "ci95_high")]
        assert got == pytest.approx(expected, rel=1e-9, abs=1e-12)
    # the default baseline is the SGD group; differences are paired by seed
    (acc,) = [p for p in _rows(out / "paired.csv") if p["metric"] == "test_accuracy"]
    assert (acc["group"], acc["baseline"], acc["seeds"]) == ("SAM rho=0.05", "SGD", "0 1")
    d = [
        float(per_run[f"sam_rho0.05_seed{s}"]["test_accuracy"])
        - float(per_run[f"sgd_seed{s}"]["test_accuracy"])
        for s in (0, 1)
    ]
    assert float(acc["mean"]) == pytest.approx(sum(d) / 2, abs=1e-12)
    assert float(acc["std"]) == pytest.approx(abs(d[0] - d[1]) / math.sqrt(2), abs=1e-12)
    md = (out / "groups.md").read_text().splitlines()
    assert md[2] == "| method | - | rho=0.05 |"
    sgd = groups["SGD"]
    mean, std = float(sgd["test_accuracy_mean"]), float(sgd["test_accuracy_std"])
    assert f"| SGD | {mean:.4f} ± {std:.4f} (n=2) |  |" in md
    # the terminal: the per-run table, then the grouped one with n, mean ± std and the interval
    lines = r.stdout.splitlines()
    assert lines[0].split()[:3] == ["run", "optimizer", "test_acc"]
    head = next(i for i, line in enumerate(lines) if line.startswith("group "))
    assert lines[head].split()[:4] == ["group", "n", "test_accuracy", "95%"]
    sgd_line = next(line for line in lines[head:] if line.startswith("SGD "))
    assert (
        f"{mean:.4g} ± {std:.2g}" in sgd_line and f"[{float(sgd['test_accuracy_ci95_low']):.4g}," in sgd_line
    )
    assert "paired by seed against 'SGD'" in r.stdout


def test_baseline_none_named_and_unknown(runs: Path, tmp_path: Path):
    r = _tables(compare, runs, "--baseline", "none", "-o", tmp_path / "none")
    assert r.exit_code == 0, r.output
    assert _rows(tmp_path / "none" / "paired.csv") == []
    assert (tmp_path / "none" / "paired.csv").read_text().startswith("group,baseline,metric,seeds,n,mean")
    assert json.loads((tmp_path / "none" / "groups.json").read_text())["baseline"] is None
    r = _tables(compare, runs, "--baseline", "SAM rho=0.05", "-o", tmp_path / "sam")
    assert r.exit_code == 0, r.output
    paired = _rows(tmp_path / "sam" / "paired.csv")
    assert {(p["group"], p["baseline"]) for p in paired} == {("SGD", "SAM rho=0.05")}
    bad = _tables(compare, runs, "--baseline", "adam")
    assert bad.exit_code == 1
    assert (
        bad.output.startswith("error: --baseline 'adam' is neither a group")
        and len(bad.output.splitlines()) == 1
    )
    assert bad.output.rstrip().endswith("choose one of 'SAM rho=0.05', 'SGD'")  # labels left as they are
    for flags, message in (
        (["--measure-rho", "-1"], "error: --measure-rho -1.0 must be > 0"),
        (["--mc-samples", "0"], "error: --mc-samples 0 must be an integer >= 1"),
    ):
        r = _tables(compare, runs, "--sharpness", "8", "--measure", "average", *flags)
        assert r.exit_code == 1 and r.output.startswith(message), r.output


def test_from_redraws_without_the_runs(runs: Path, tmp_path: Path):
    copy = tmp_path / "runs"
    shutil.copytree(runs, copy)
    out = tmp_path / "cmp"
    first = _tables(compare_magnitude, copy, "-o", out)
    assert first.exit_code == 0, first.output
    shutil.rmtree(copy)  # nothing left to recompute from
    again = _invoke(
        compare_magnitude, copy, "--from", out / "comparison.json", "-o", tmp_path / "re", "--format", "pdf"
    )
    assert again.exit_code == 0, again.output
    assert again.stdout == first.stdout
    for name in ("comparison.pdf", "groups.pdf"):
        assert (tmp_path / "re" / name).read_bytes()[:4] == b"%PDF"
    (out / "groups.json").unlink()  # a comparison.json of an earlier version: per-run only, said so
    old = _invoke(compare_magnitude, copy, "--from", out / "comparison.json")
    assert old.exit_code == 0 and "grouped comparison is not redrawn" in old.stderr


def _measure_reference(checkpoint: Path, samples: int, seed: int, **options) -> float:
    from landscape.measures import MeasureOptions, compute_measures
    from landscape.objective.loading import objective_from_checkpoint

    objective, _, _ = objective_from_checkpoint(
        checkpoint, samples=samples, seed=seed, device="cpu", split="train"
    )
    return compute_measures(objective, ["average"], MeasureOptions(seed=seed, **options))["average"].value


def test_measure_average_is_a_grouped_metric(runs: Path, tmp_path: Path):
    root = tmp_path / "two"
    for name in ("sgd_seed0", "sgd_seed1"):
        shutil.copytree(runs / name, root / name)
    out = tmp_path / "cmp"
    args = ["--sharpness", "16", "--measure", "average", "--mc-samples", "4", "--device", "cpu"]
    r = _tables(compare_magnitude, root, *args, "-o", out)
    assert r.exit_code == 0, r.output
    doc = json.loads((out / "comparison.json").read_text())
    values = []
    for run in doc["runs"]:
        m = run["measures"]["average"]
        ref = _measure_reference(Path(run["path"]) / "final.pt", 16, 0, mc_samples=4)
        assert m["value"] == pytest.approx(ref, rel=1e-6) and m["source"] == "computed"
        assert m["settings"] and m["stderr"] is not None and m["seed"] == 0
        values.append(m["value"])
    assert [float(r["sharpness_average"]) for r in _rows(out / "comparison.csv")] == pytest.approx(values)
    (g,) = _rows(out / "groups.csv")
    assert float(g["sharpness_average_mean"]) == pytest.approx(sum(values) / 2, rel=1e-12)
    assert float(g["sharpness_average_std"]) == pytest.approx(
        abs(values[0] - values[1]) / math.sqrt(2), rel=1e-9
    )
    assert "sharpness_average: mean ± std over seeds" in (out / "groups.md").read_text()
    assert "sharpness_average" in r.stdout.splitlines()[4]  # the grouped table's header


def _store(run: Path, *extra: str) -> dict:
    """'landscape sharpness RUN/final.pt -o RUN' with a measure, as a user leaves it in a run."""
    from landscape.cli.main import cli

    r = CliRunner().invoke(
        cli,
        [
            "sharpness",
            str(run / "final.pt"),
            "--samples",
            "16",
            "--top-k",
            "1",
            "--device",
            "cpu",
            "--measure",
            "average",
            *extra,
            "-o",
            str(run),
            "--overwrite",
        ],
    )
    assert r.exit_code == 0, r.output
    return json.loads((run / "sharpness.json").read_text())


def test_stored_measure_is_reused_only_with_the_same_settings(runs: Path, tmp_path: Path):
    run = tmp_path / "one" / "sgd_seed0"
    shutil.copytree(runs / "sgd_seed0", run)
    doc = _store(run, "--mc-samples", "4")
    args = ["--sharpness", "16", "--measure", "average", "--device", "cpu", "-o", tmp_path / "cmp"]

    def measured(*extra: str) -> dict:
        r = _tables(compare_magnitude, run.parent, *args, *extra)
        assert r.exit_code == 0, r.output
        return json.loads((tmp_path / "cmp" / "comparison.json").read_text())["runs"][0]

    same = measured("--mc-samples", "4")
    assert same["measures"]["average"]["source"] == str(run / "sharpness.json")
    assert same["measures"]["average"]["value"] == doc["measures"]["average"]["value"]
    assert same["lambda_max_source"] == str(run / "sharpness.json")
    other = measured("--mc-samples", "8")  # other settings: computed
    assert other["measures"]["average"]["source"] == "computed"
    assert other["measures"]["average"]["settings"] != doc["measures"]["average"]["settings"]
    wider = measured("--mc-samples", "4", "--dtype", "float64")  # other precision: both recomputed
    assert wider["measures"]["average"]["source"] == "computed"
    assert wider["lambda_max_source"] == "computed" and wider["lambda_max_settings"]["dtype"] == "float64"
    assert wider["measures"]["average"]["objective"]["dtype"] == "float64"


def test_stored_measure_is_reused_when_only_another_measures_option_differs(runs: Path, tmp_path: Path):
    # --steps is read by worst-case (and Keskar) sharpness only: a stored average stands for itself
    run = tmp_path / "one" / "sgd_seed0"
    shutil.copytree(runs / "sgd_seed0", run)
    doc = _store(run, "--mc-samples", "4", "--steps", "3")
    args = ["--sharpness", "16", "--measure", "average", "--mc-samples", "4", "--device", "cpu"]
    r = _tables(compare_magnitude, run.parent, *args, "-o", tmp_path / "cmp")
    assert r.exit_code == 0, r.output
    row = json.loads((tmp_path / "cmp" / "comparison.json").read_text())["runs"][0]
    assert row["measures"]["average"]["source"] == str(run / "sharpness.json")
    assert row["measures"]["average"]["value"] == doc["measures"]["average"]["value"]


def test_measure_needs_the_sharpness_sample_and_a_known_name(runs: Path):
    r = _invoke(compare_magnitude, runs, "--measure", "average")
    assert r.exit_code == 1 and r.output.startswith("error: --measure average need --sharpness N")
    assert "e.g. --sharpness 512" in r.output
    r = _invoke(compare_magnitude, runs, "--sharpness", "8", "--measure", "flatness")
    assert r.exit_code == 1 and "measure 'flatness' is not known; choose from worst" in r.output


def test_checkpoint_only_folder_joins_as_its_own_group(runs: Path, tmp_path: Path):
    only = tmp_path / "only"
    (only / "their_model").mkdir(parents=True)
    shutil.copy(runs / "sgd_seed0" / "final.pt", only / "their_model" / "final.pt")
    r = _tables(compare_magnitude, only, "-o", tmp_path / "a")
    assert r.exit_code == 0, r.output
    (g,) = _rows(tmp_path / "a" / "groups.csv")
    assert (g["group"], g["n"], g["seeds"]) == ("their_model (checkpoint only)", "1", "")
    assert json.loads((tmp_path / "a" / "comparison.json").read_text())["runs"] == []
    assert "their_model (checkpoint only)" in r.stdout
    mixed = tmp_path / "mixed"
    shutil.copytree(runs, mixed)
    shutil.copytree(only / "their_model", mixed / "their_model")
    r = _tables(compare, mixed, "-o", tmp_path / "b")
    assert r.exit_code == 0, r.output
    groups = [g["group"] for g in _rows(tmp_path / "b" / "groups.csv")]
    assert groups == ["SAM rho=0.05", "SGD", "their_model (checkpoint only)"]
    assert {p["group"] for p in _rows(tmp_path / "b" / "paired.csv")} == {"SAM rho=0.05"}


def test_alias_is_the_same_command():
    assert compare.name == "compare" and compare_magnitude.name == "compare-magnitude"
    assert compare.callback is compare_magnitude.callback
    assert [p.name for p in compare.params] == [p.name for p in compare_magnitude.params]
    assert "--baseline" in CliRunner().invoke(compare, ["-h"]).output


def test_lambda_max_dtype_is_recorded(runs: Path, tmp_path: Path):
    root = tmp_path / "r"
    shutil.copytree(runs / "sgd_seed0", root / "sgd_seed0")
    r = _invoke(compare_magnitude, root, "--sharpness", "16", "--dtype", "float64", "--tol", "1e-8", "--json")
    assert r.exit_code == 0, r.output
    run = json.loads(r.stdout)["runs"][0]
    assert run["lambda_max_settings"]["dtype"] == "float64" and run["lambda_max_settings"]["subset"] == 16
    # dense float64 Hessian of the same sample
    from landscape.objective.loading import objective_from_checkpoint

    obj, _, _ = objective_from_checkpoint(
        root / "sgd_seed0" / "final.pt", samples=16, seed=0, device="cpu", split="train", dtype=torch.float64
    )
    params = [p.detach() for p in obj.params]
    sizes = [p.numel() for p in params]
    ((x, y, _),) = list(obj.batches())

    def loss_of(flat):
        chunks = torch.split(flat, sizes)
        return obj.functional_batch_loss(
            {n: c.view_as(p) for n, c, p in zip(obj.param_names, chunks, params)}, x, y
        )

    h = torch.func.hessian(loss_of)(torch.cat([p.flatten() for p in params]))
    assert run["lambda_max"] == pytest.approx(float(torch.linalg.eigvalsh(h)[-1]), rel=1e-7)
    assert "groups" in json.loads(r.stdout)
