"""Every bad input to ``landscape train`` is one line naming the value and the fix, exit status 1.

Settings are checked before the run folder is created, so a refused command leaves nothing behind;
a run folder that cannot be resumed is left exactly as it was.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from landscape.cli.main import cli

TINY = ["--model-kwargs", '{"width": 2}', "--samples", "32", "--batch-size", "16", "--epochs", "1", "-q"]


def _invoke(args: list[str], out: Path):
    base = TINY
    if "--data" in args:  # a whole dataset of the case's own: no subset of it
        i = TINY.index("--samples")
        base = TINY[:i] + TINY[i + 2 :]
    return CliRunner().invoke(cli, ["train", *base, *args, "-o", str(out)])


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A finished tiny run; a rerun of the same command re-reads its logs and resume state."""
    out = tmp_path_factory.mktemp("finished") / "run"
    r = _invoke([], out)
    assert r.exit_code == 0, r.output
    return out


def _empty_data(folder: Path) -> str:
    path = folder / "empty.pt"
    torch.save({"x": torch.zeros(0, 1, 8, 8), "y": torch.zeros(0, dtype=torch.int64)}, path)
    return str(path)


def _rewrite(name: str, edit):
    def damage(run: Path) -> None:
        path = run / name
        edit(path)

    return damage


def _replace_text(old: str, new: str):
    return lambda p: p.write_text(p.read_text().replace(old, new, 1))


def _drop_last_line(path: Path) -> None:
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:-1]))


# (id, extra arguments, expected message). The folder does not exist before; it must not after.
FRESH_CASES = [
    ("batch-size-0", ["--batch-size", "0"], r"--batch-size=0 must be > 0"),
    ("batch-size-negative", ["--batch-size", "-4"], r"--batch-size=-4 must be > 0"),
    ("negative-rho", ["--optimizer", "sam", "--rho", "-0.05"], r"--rho=-0.05 must be >= 0"),
    (
        "opt-kwargs-unknown-option",
        ["--optimizer", "msam", "--opt-kwargs", '{"nesterov": true}'],
        r'--opt-kwargs \{"nesterov": true\} does not fit --optimizer msam: .*nesterov',
    ),
    (
        "opt-kwargs-bad-value",
        ["--optimizer", "sgd-hess", "--opt-kwargs", '{"hessian_period": 0}'],
        r'--opt-kwargs \{"hessian_period": 0\} does not fit --optimizer sgd-hess: hessian_period=0',
    ),
    ("opt-kwargs-not-json", ["--opt-kwargs", "{bad"], r"--opt-kwargs is not valid JSON"),
    ("opt-kwargs-not-object", ["--opt-kwargs", "[1]"], r"--opt-kwargs must be a JSON object"),
    ("device-cuda-without-cuda", ["--device", "cuda"], r"--device='cuda' asked for CUDA but no CUDA device"),
    ("device-unknown", ["--device", "tpu"], r"--device='tpu' is not valid; choose auto, cpu"),
    ("empty-training-data", ["--data", "EMPTY"], r"--data '.*empty\.pt' holds no training examples"),
    (
        "one-sample",
        ["--samples", "1"],
        r"the training set has 1 example\(s\), fewer than one step's batch \(16\); lower --batch-size",
    ),
    (
        "minmin-batches-too-large",
        ["--optimizer", "minmin"],
        r"fewer than one step's batch \(288\); lower small_batch_size/large_batch_size in --opt-kwargs",
    ),
    ("model-kwargs-unknown", ["--model-kwargs", '{"widht": 2}'], r"model 'cnn' does not take .*widht"),
    ("model-kwargs-not-json", ["--model-kwargs", "{"], r"--model-kwargs is not valid JSON"),
    ("unknown-model", ["--model", "nope"], r"unknown model 'nope'; choose one of"),
    ("unknown-data", ["--data", "nope"], r"unknown dataset 'nope'; choose one of"),
    ("negative-lr", ["--lr", "-1"], r"--lr=-1.0 must be > 0"),
    ("momentum-one", ["--momentum", "1"], r"--momentum=1.0 must be in \[0, 1\)"),
    ("zero-epochs", ["--epochs", "0"], r"--epochs=0 must be > 0"),
    ("zero-save-every", ["--save-every", "0"], r"--save-every=0 must be > 0"),
    ("negative-weight-decay", ["--weight-decay", "-1"], r"--weight-decay=-1.0 must be >= 0"),
]


@pytest.mark.parametrize(("args", "message"), [c[1:] for c in FRESH_CASES], ids=[c[0] for c in FRESH_CASES])
def test_bad_settings_are_one_line_and_leave_nothing_behind(tmp_path, monkeypatch, args, message):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    args = [_empty_data(tmp_path) if a == "EMPTY" else a for a in args]
    out = tmp_path / "run"
    r = _invoke(args, out)
    assert r.exit_code == 1, r.output
    line = r.output.strip()
    assert "\n" not in line and line.startswith("error: "), r.output
    assert not line.startswith("error: unexpected") and "Traceback" not in line
    assert re.search(message, line), line
    assert not out.exists()


# (id, damage done to a finished run folder, expected message). The folder must be left as it is.
RESUME_CASES = [
    (
        "metrics-csv-garbage-value",
        _rewrite("metrics.csv", lambda p: p.write_text(p.read_text().replace("\n0,0,", "\n0,0,abc,", 1))),
        r"metrics\.csv' is damaged \(.*\), so the run cannot be resumed; pass --overwrite",
    ),
    (
        "metrics-csv-missing-column",
        _rewrite("metrics.csv", _replace_text(",test_loss,", ",nothing,")),
        r"metrics\.csv' is damaged \(row 1 has no test_loss\).*--overwrite",
    ),
    (
        "metrics-csv-missing",
        _rewrite("metrics.csv", lambda p: p.unlink()),
        r"metrics\.csv' is missing, so the run cannot be resumed; pass --overwrite",
    ),
    (
        "metrics-csv-binary",
        _rewrite("metrics.csv", lambda p: p.write_bytes(b"\xff\xfe\x00garbage")),
        r"metrics\.csv' is damaged .*--overwrite",
    ),
    (
        "metrics-csv-lost-epoch",
        _rewrite("metrics.csv", _drop_last_line),
        r"metrics\.csv' does not list epochs 0\.\.1 as the resume state says.*--overwrite",
    ),
    (
        "steps-csv-truncated",
        _rewrite("steps.csv", _drop_last_line),
        r"steps\.csv' has 1 steps where the resume state has 2.*--overwrite",
    ),
    (
        "steps-csv-garbage-value",
        _rewrite("steps.csv", _replace_text("\n1,1,", "\n1,x,")),
        r"steps\.csv' is damaged .*--overwrite",
    ),
    (
        "state-pt-damaged",
        _rewrite("state.pt", lambda p: p.write_bytes(b"garbage")),
        r"cannot resume from '.*state\.pt' \(.*\); pass --overwrite",
    ),
    (
        "config-json-damaged",
        _rewrite("config.json", lambda p: p.write_text("{not json")),
        r"config\.json' is unreadable .*; pass --overwrite",
    ),
]


@pytest.mark.parametrize("damage,message", [c[1:] for c in RESUME_CASES], ids=[c[0] for c in RESUME_CASES])
def test_a_run_that_cannot_be_resumed_is_named_and_left_alone(tmp_path, finished_run, damage, message):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    damage(run)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    r = _invoke([], run)
    assert r.exit_code == 1, r.output
    line = r.output.strip()
    assert "\n" not in line and line.startswith("error: "), r.output
    assert re.search(message, line), line
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    fixed = _invoke(["--overwrite"], run)
    assert fixed.exit_code == 0, fixed.output


def test_other_settings_and_a_file_as_out_are_refused(tmp_path, finished_run):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    r = _invoke(["--lr", "0.2"], run)
    assert r.exit_code == 1
    assert r.output.strip().endswith(
        "holds a run with other settings (lr differ); use another -o/--out or pass --overwrite"
    )
    afile = tmp_path / "file"
    afile.write_text("x")
    r = _invoke([], afile)
    assert r.exit_code == 1 and "exists and is not a directory" in r.output and afile.read_text() == "x"


def test_the_same_command_after_a_finished_run_is_recognised(tmp_path, finished_run):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    r = _invoke(["--json"], run)
    assert r.exit_code == 0, r.output
    assert '"resumed_from_epoch": 1' in r.output


def test_a_fresh_run_does_not_say_it_resumed(tmp_path):
    r = _invoke([], tmp_path / "fresh")
    assert r.exit_code == 0, r.output
    assert "resumed_from_epoch" not in r.output and "train_loss" in r.output
    again = _invoke([], tmp_path / "fresh")  # a finished run read back says where it resumed from
    assert again.exit_code == 0 and "resumed_from_epoch" in again.output
