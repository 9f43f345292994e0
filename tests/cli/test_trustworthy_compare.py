"""Issue 21, items 1, 3, 5 and 12 through the CLI: ``compare`` leaves out unfinished and diverged
runs (and says so), ``train -o`` refuses a sweep's folder, a metric's own n, and ``sweep -q`` names
each failure's reason and log.

Tiny runs: an MLP on 64 digits, SGD, 2 epochs, seeds 0..3 of one sweep; killed, truncated and
diverged runs are made from finished ones by deleting ``final.pt`` or editing ``metrics.csv``.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from landscape.cli.main import cli

_TINY = ("--model", "mlp", "--samples", "64", "--data", "digits")


def _invoke(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _set_last(run: Path, column: str, value: str) -> None:
    """Overwrite ``column`` of the last row of ``run/metrics.csv``."""
    rows = _rows(run / "metrics.csv")
    rows[-1][column] = value
    with open(run / "metrics.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sweep") / "sw"
    res = _invoke(
        "sweep", "-o", root, "--optimizer", "sgd", "--seeds", "0,1,2,3", *_TINY, "--epochs", "2", "-q"
    )
    assert res.exit_code == 0, res.output
    return root


@pytest.fixture
def sweep_copy(sweep_dir: Path, tmp_path: Path) -> Path:
    out = tmp_path / "sw"
    shutil.copytree(sweep_dir, out)
    return out


def test_compare_leaves_out_killed_truncated_and_diverged_runs(sweep_copy: Path, tmp_path: Path):
    (sweep_copy / "sgd_seed1" / "final.pt").unlink()  # killed before the end
    rows = _rows(sweep_copy / "sgd_seed2" / "metrics.csv")
    (sweep_copy / "sgd_seed2" / "metrics.csv").write_text(  # killed after epoch 1 of 2
        "\n".join([",".join(rows[0]), *(",".join(r.values()) for r in rows[:-1])]) + "\n"
    )
    _set_last(sweep_copy / "sgd_seed3", "train_loss", "nan")  # diverged
    res = _invoke("compare", sweep_copy, "-o", tmp_path / "out", "--no-figures")
    assert res.exit_code == 0, res.output
    assert "3 of 4 runs left out (1 used" in res.output
    assert "sgd_seed1: no final.pt" in res.output
    assert "sgd_seed2: 1 of 2 epochs" in res.output
    assert "sgd_seed3: final train loss nan is not finite" in res.output
    (group,) = _rows(tmp_path / "out" / "groups.csv")
    assert group["n"] == "1" and group["seeds"] == "0"
    full = _invoke("compare", sweep_copy, "-o", tmp_path / "all", "--no-figures", "--include-unfinished")
    assert full.exit_code == 0, full.output
    assert "left out" not in full.output
    (group,) = _rows(tmp_path / "all" / "groups.csv")
    assert group["n"] == "4"


def test_every_run_failed_sweep_says_why_and_compare_refuses(tmp_path: Path):
    root = tmp_path / "sw_nan"
    res = _invoke(
        "sweep",
        "-o",
        root,
        "--optimizer",
        "sgd,sam",
        "--seeds",
        "0,1",
        *("--model", "mlp", "--samples", "256", "--batch-size", "16"),  # enough steps to reach NaN
        "--epochs",
        "1",
        "--lr",
        "1e8",
        "-q",
    )
    assert res.exit_code != 0
    assert "compare them with" not in res.output
    for name in ("sgd_seed0", "sgd_seed1", "sam_seed0", "sam_seed1"):
        log = root / f"{name}.failed.log"
        assert f"failed: {name}: " in res.output and f"(log: {log})" in res.output
        assert log.read_text().strip()  # the reason is kept
    refused = _invoke("compare", root)
    assert refused.exit_code != 0
    assert "unfinished or diverged" in refused.output and "--include-unfinished" in refused.output


def test_train_refuses_a_folder_holding_a_sweep(sweep_dir: Path):
    res = _invoke("train", "-o", sweep_dir, *_TINY, "--epochs", "1")
    assert res.exit_code != 0
    assert "holds 4 run folder(s)" in res.output
    assert not (sweep_dir / "config.json").exists()


def test_compare_warns_when_the_run_holds_runs(sweep_dir: Path, tmp_path: Path):
    outer = tmp_path / "outer"
    shutil.copytree(sweep_dir / "sgd_seed0", outer)
    shutil.copytree(sweep_dir / "sgd_seed1", outer / "sgd_seed1")
    res = _invoke("compare", outer)
    assert res.exit_code == 0, res.output
    assert "is itself a run and also holds 1 run folder(s) (sgd_seed1)" in res.output


def test_a_metric_missing_in_one_seed_gets_its_own_n(sweep_copy: Path, tmp_path: Path):
    _set_last(sweep_copy / "sgd_seed0", "test_accuracy", "nan")
    res = _invoke("compare", sweep_copy, "-o", tmp_path / "out", "--no-figures")
    assert res.exit_code == 0, res.output
    (group,) = _rows(tmp_path / "out" / "groups.csv")
    assert group["n"] == "4" and group["test_accuracy_n"] == "3" and group["train_loss_n"] == "4"
    finite = [
        float(_rows(sweep_copy / f"sgd_seed{s}" / "metrics.csv")[-1]["test_accuracy"]) for s in (1, 2, 3)
    ]
    assert float(group["test_accuracy_mean"]) == pytest.approx(sum(finite) / 3, rel=1e-12)
    assert "test_accuracy is averaged over 3 of its 4 runs" in res.output
    assert "(n=3)" in res.output


def test_a_failed_worker_process_keeps_its_stderr_in_the_log(tmp_path: Path):
    root = tmp_path / "sw_nan"
    args = ("--model", "mlp", "--samples", "256", "--batch-size", "16", "--epochs", "1", "--lr", "1e8")
    res = _invoke("sweep", "-o", root, "--optimizer", "sgd", "--seeds", "0,1", *args, "--jobs", "2", "-q")
    assert res.exit_code != 0
    for name in ("sgd_seed0", "sgd_seed1"):
        log = root / f"{name}.failed.log"
        assert f"(log: {log})" in res.output
        assert "loss became nan" in log.read_text()
