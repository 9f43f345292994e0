"""``landscape plot1d`` / ``plot2d``: files and figures, redraw, refusal, kill-and-resume, torchrun."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cli.main import cli
from landscape.io.checkpoints import save_checkpoint
from landscape.io.data import DataSpec
from landscape.io.models import ModelSpec, build_model
from landscape.surface import Surface

REPO = Path(__file__).resolve().parents[2]
COMMON = ["--samples", "64", "--batch-size", "32", "--device", "cpu", "-q"]


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _ckpt(path: Path, seed: int, name: str = "cnn", **kwargs: object) -> Path:
    torch.manual_seed(seed)
    kwargs = kwargs or ({"width": 4} if name == "cnn" else {"hidden": [8]})
    save_checkpoint(
        path,
        build_model(name, **kwargs),
        model_spec=ModelSpec(name, dict(kwargs)),
        data_spec=DataSpec("digits"),
    )
    return path


def run(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_help_has_examples():
    for command in ("plot1d", "plot2d"):
        r = run(command, "--help")
        assert r.exit_code == 0 and "Examples:" in r.output and "--bn" in r.output


def test_plot1d_random_and_interpolation_write_surface_and_figures(tmp_path):
    a, b = _ckpt(tmp_path / "a.pt", 0), _ckpt(tmp_path / "b.pt", 1)
    out = tmp_path / "out"
    r = run("plot1d", a, "--x", "-1:1:5", "-o", out, "--json", "--format", "png", "--format", "pdf", *COMMON)
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert Path(res["surface"]).name == "a_random_1d.npz"
    assert {Path(p).name for p in res["figures"]} == {"a_random_1d.png", "a_random_1d.pdf"}
    for p in res["figures"]:
        assert Path(p).stat().st_size > 1000
    s = Surface.load(out / "a_random_1d.npz")
    assert s.complete and s.metadata["direction"]["seed"] == 0 and s.metadata["direction"]["norm"] == "filter"
    r = run("plot1d", a, "--to", b, "--x", "-0.5:1.5:5", "--mode", "states", "-o", out, *COMMON)
    assert r.exit_code == 0, r.output
    s = Surface.load(out / "a_interpolation_1d.npz")
    assert s.metadata["direction"]["kind"] == "interpolation" and s.metadata["direction"]["mode"] == "states"
    assert (out / "a_interpolation_1d.png").is_file()
    r = run(
        "plot1d",
        "--from",
        out / "a_random_1d.npz",
        "--from",
        out / "a_interpolation_1d.npz",
        "--name",
        "both",
        "-o",
        out,
        "--log",
    )
    assert r.exit_code == 0, r.output
    assert (out / "both.png").is_file()


def test_plot2d_kinds_plane_pca_and_redraw(tmp_path):
    traj = tmp_path / "traj"
    traj.mkdir()
    ckpts = [_ckpt(traj / f"step_{i}.pt", i) for i in range(3)]
    out = tmp_path / "out"
    r = run(
        "plot2d",
        ckpts[0],
        "--x",
        "-1:1:4",
        "--y",
        "-0.5:1:3",
        "--kind",
        "contour",
        "--kind",
        "surface3d",
        "-o",
        out,
        *COMMON,
    )
    assert r.exit_code == 0, r.output
    assert (out / "step_0_random_2d_contour.png").is_file() and (
        out / "step_0_random_2d_surface3d.png"
    ).is_file()
    s = Surface.load(out / "step_0_random_2d.npz")
    assert s.shape == (4, 3) and abs(s.metadata["directions"]["cosine"]) < 1e-6
    r = run(
        "plot2d", ckpts[0], "--ckpts", ckpts[1], ckpts[2], "--x", "0:1:2", "--y", "0:1:2", "-o", out, *COMMON
    )
    assert r.exit_code == 0, r.output
    plane = Surface.load(out / "step_0_plane_2d.npz")
    assert plane.metadata["point_labels"] == ["step_0", "step_1", "step_2"]
    r = run(
        "plot2d",
        ckpts[2],
        "--trajectory",
        traj,
        "--x",
        "-1:1:3",
        "--y",
        "-1:1:3",
        "--kind",
        "filled",
        "-o",
        out,
        *COMMON,
    )
    assert r.exit_code == 0, r.output
    pca = Surface.load(out / "step_2_pca_2d.npz")
    assert pca.extras["path_x"].shape == (3,) and pca.extras[
        "explained_variance_ratio"
    ].sum() == pytest.approx(1.0)
    # without --x/--y the grid is fitted to the projected path (and the centre), 15% padding
    r = run("plot2d", ckpts[2], "--trajectory", traj, "--name", "fitted", "-o", out, *COMMON)
    assert r.exit_code == 0, r.output
    fitted = Surface.load(out / "fitted.npz")
    px, py = fitted.extras["path_x"], fitted.extras["path_y"]
    for axis, values in ((fitted.xs, px), (fitted.ys, py)):
        lo, hi = min(values.min(), 0.0), max(values.max(), 0.0)
        pad = 0.15 * (hi - lo)
        assert len(axis) == 51
        assert axis[0] == pytest.approx(lo - pad) and axis[-1] == pytest.approx(hi + pad)
    r = run(
        "plot2d",
        "--from",
        out / "step_0_random_2d.npz",
        "--from",
        out / "step_0_plane_2d.npz",
        "--kind",
        "heatmap",
        "-o",
        out / "redraw",
        "--format",
        "pdf",
    )
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (out / "redraw").iterdir()) == [
        "step_0_plane_2d_heatmap.pdf",
        "step_0_random_2d_heatmap.pdf",
    ]


def test_mismatched_file_is_refused_then_overwritten(tmp_path):
    a = _ckpt(tmp_path / "a.pt", 0)
    args = ["plot1d", a, "--x", "-1:1:3", "-o", tmp_path, *COMMON]
    assert run(*args).exit_code == 0
    r = run(*args[: -len(COMMON)], *COMMON[:-1], "--seed", "1", "-q")
    assert r.exit_code == 1
    line = r.output.strip()
    assert (
        line.startswith("error: ")
        and "other settings" in line
        and "--overwrite" in line
        and len(line.splitlines()) == 1
    )
    r = run(*args, "--seed", "1", "--overwrite")
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--x", "1:0:3"], "--x='1:0:3'"),
        (["--dir-type", "interpolation"], "--to CKPT2"),
        (["--bn", "recalibrate", "--model", "mlp", "--model-kwargs", '{"hidden": [8]}'], ""),
    ],
    ids=["range", "interp-without-to", "recal-mlp"],
)
def test_bad_input_is_one_line(tmp_path, args, fragment):
    ckpt = _ckpt(tmp_path / "m.pt", 0, "mlp") if "--model" in args else _ckpt(tmp_path / "c.pt", 0)
    r = run("plot1d", ckpt, "-o", tmp_path, *COMMON, *args)
    assert r.exit_code == 1 and r.output.startswith("error: ") and len(r.output.strip().splitlines()) == 1
    assert fragment in r.output


def test_missing_checkpoint_or_both_inputs(tmp_path):
    r = run("plot2d", "-o", tmp_path)
    assert r.exit_code == 1 and "missing CHECKPOINT" in r.output


def test_killed_run_resumes_to_the_identical_array(tmp_path):
    """A real process is killed mid-grid (SIGKILL); the same command finishes the remaining points."""
    a = _ckpt(tmp_path / "a.pt", 0)
    args = [
        "plot2d",
        str(a),
        "--x",
        "-1:1:12",
        "--y",
        "-1:1:12",
        "--chunk-size",
        "1",
        "--save-every",
        "0",
        *COMMON,
    ]
    full = subprocess.run(
        [sys.executable, "-m", "cli.main", *args, "-o", str(tmp_path / "full")],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert full.returncode == 0, full.stderr
    out = tmp_path / "killed"
    path = out / "a_random_2d.npz"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", *args, "-o", str(out)],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    partial = 0
    while time.monotonic() < deadline and proc.poll() is None:
        if path.exists():
            try:
                partial = Surface.load(path).num_done
            except Exception:  # noqa: BLE001 - a rename may race the read; poll again
                partial = 0
            if partial >= 5:
                proc.send_signal(signal.SIGKILL)
                break
        time.sleep(0.005)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    stored = Surface.load(path)
    assert 5 <= stored.num_done < 144
    again = subprocess.run(
        [sys.executable, "-m", "cli.main", *args, "-o", str(out)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0, again.stderr
    done, ref = Surface.load(path), Surface.load(tmp_path / "full" / "a_random_2d.npz")
    assert done.complete and done.fingerprint == ref.fingerprint
    assert np.array_equal(done.loss, ref.loss) and np.array_equal(done.accuracy, ref.accuracy)


def test_torchrun_two_processes_equal_one(tmp_path):
    a = _ckpt(tmp_path / "a.pt", 0)
    args = [
        "plot2d",
        str(a),
        "--x",
        "-1:1:5",
        "--y",
        "-1:1:3",
        "--chunk-size",
        "2",
        "--bn",
        "recalibrate",
        *COMMON,
    ]
    single = subprocess.run(
        [sys.executable, "-m", "cli.main", *args, "-o", str(tmp_path / "one")],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert single.returncode == 0, single.stderr
    dist = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "cli.main",
            *args,
            "-o",
            str(tmp_path / "two"),
        ],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert dist.returncode == 0, dist.stderr[:3000]
    one, two = (
        Surface.load(tmp_path / "one" / "a_random_2d.npz"),
        Surface.load(tmp_path / "two" / "a_random_2d.npz"),
    )
    assert two.complete and two.metadata["world_size"] == 2 and one.fingerprint == two.fingerprint
    np.testing.assert_array_equal(two.loss, one.loss)
    np.testing.assert_array_equal(two.accuracy, one.accuracy)
    assert (tmp_path / "two" / "a_random_2d_contour.png").is_file()


def test_interpolation_defaults_to_states_so_both_ends_are_the_checkpoints(tmp_path):
    """Without --mode, alpha = 0 and alpha = 1 give each checkpoint's own loss (BN statistics included)."""
    a, b = _ckpt(tmp_path / "a.pt", 0), _ckpt(tmp_path / "b.pt", 1)
    with torch.no_grad():  # distinct running statistics, or weights mode would pass by accident
        for i, p in enumerate((a, b)):
            model = build_model("cnn", width=4)
            model.load_state_dict(torch.load(p, weights_only=True)["state_dict"])
            for m in model.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.running_mean.fill_(0.3 * (i + 1))
                    m.running_var.fill_(0.5 + i)
            save_checkpoint(p, model, model_spec=ModelSpec("cnn", {"width": 4}), data_spec=DataSpec("digits"))
    out = tmp_path / "out"
    r = run("plot1d", a, "--to", b, "--x", "0:1:3", "-o", out, "--dtype", "float64", *COMMON)
    assert r.exit_code == 0, r.output
    s = Surface.load(out / "a_interpolation_1d.npz")
    assert s.metadata["direction"]["mode"] == "states"
    for ckpt, value in ((a, s.loss.ravel()[0]), (b, s.loss.ravel()[-1])):
        e = run(
            "evaluate",
            ckpt,
            "--json",
            "--dtype",
            "float64",
            "--samples",
            "64",
            "--batch-size",
            "32",
            "--device",
            "cpu",
        )
        assert value == pytest.approx(json.loads(e.output)["loss"], rel=1e-10)
