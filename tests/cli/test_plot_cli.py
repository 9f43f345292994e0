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

from landscape.cli.main import cli
from landscape.data.datasets import DataSpec
from landscape.models.builders import ModelSpec, build_model
from landscape.models.checkpoints import save_checkpoint
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
        and "--name" in line
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


@pytest.mark.parametrize("command", ["plot1d", "plot2d"])
def test_precision_prints_the_float32_difference_and_refuses_a_mix(tmp_path, command):
    a = _ckpt(tmp_path / "a.pt", 0)
    grid = ["--x", "-1:1:21"] if command == "plot1d" else ["--x", "-1:1:5", "--y", "-1:1:5"]
    args = [command, a, *grid, "-o", tmp_path, *COMMON]
    r = run(*args, "--precision", "bfloat16")
    assert r.exit_code == 0, r.output
    lines = [line for line in r.output.splitlines() if line.startswith("precision ")]
    assert len(lines) == 1 and lines[0].startswith(
        "precision bfloat16 vs float32 at 1 point: max |loss diff| "
    )
    s = Surface.load(tmp_path / f"a_random_{command[-2:]}.npz")
    check = s.metadata["precision_check"]
    assert s.metadata["precision"] == "bfloat16" and f"{check['max_abs_diff']:.2e}" in lines[0]
    r = run(*args, "--json")  # float32 on the bfloat16 file
    assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 1
    assert "differs in: precision" in r.output and "--overwrite" in r.output
    r = run(*args, "--precision", "bfloat16", "--json")  # resumes: nothing to compute
    assert r.exit_code == 0, r.output
    surface = json.loads(r.output)["surfaces"][0]
    assert surface["precision"] == "bfloat16" and surface["precision_check"] == check


def test_precision_in_help_and_float32_prints_no_difference(tmp_path):
    r = run("plot2d", "--help")
    assert "--precision" in r.output and "float32|bfloat16|float16" in r.output
    r = run("plot1d", _ckpt(tmp_path / "a.pt", 0), "--x", "-1:1:3", "-o", tmp_path, *COMMON)
    assert r.exit_code == 0 and not any(line.startswith("precision") for line in r.output.splitlines())


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
        [sys.executable, "-m", "landscape", *args, "-o", str(tmp_path / "full")],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert full.returncode == 0, full.stderr
    out = tmp_path / "killed"
    path = out / "a_random_2d.npz"
    proc = subprocess.Popen(
        [sys.executable, "-m", "landscape", *args, "-o", str(out)],
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
        [sys.executable, "-m", "landscape", *args, "-o", str(out)],
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
        [sys.executable, "-m", "landscape", *args, "-o", str(tmp_path / "one")],
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
            "landscape",
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


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), to know it is computing, not importing."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to see the run compute")
def test_interrupted_run_saves_its_points_and_resumes_with_only_the_rest(tmp_path):
    """SIGINT (Ctrl-C) mid-grid with no periodic save due: the points done are saved, exit 130, and
    a rerun limited to the missing number of points completes the identical surface."""
    a = _ckpt(tmp_path / "a.pt", 0)
    args = [
        "plot2d",
        str(a),
        "--x",
        "-1:1:20",
        "--y",
        "-1:1:20",
        "--chunk-size",
        "1",
        "--points-per-pass",
        "1",
    ]
    args += COMMON
    full = subprocess.run(
        [sys.executable, "-m", "landscape", *args, "-o", str(tmp_path / "full")],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert full.returncode == 0, full.stderr
    out = tmp_path / "interrupted"
    path = out / "a_random_2d.npz"
    proc = subprocess.Popen(
        [sys.executable, "-m", "landscape", *args, "--save-every", "100000", "-o", str(out)],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not path.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)  # the empty file is written just before the first point
    start = _cpu_seconds(proc.pid)
    while proc.poll() is None and _cpu_seconds(proc.pid) - start < 0.1 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert proc.poll() is None, "the run finished before it could be interrupted"
    assert Surface.load(path).num_done == 0  # nothing saved yet: only the interrupt can save points
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    stored = Surface.load(path)
    assert 1 <= stored.num_done < 400
    assert (
        err.strip()
        == f"error: interrupted; {stored.num_done}/400 points saved in {str(path)!r}, rerun to resume"
    )
    rest = subprocess.run(
        [
            sys.executable,
            "-m",
            "landscape",
            *args,
            "--max-points",
            str(400 - stored.num_done),
            "-o",
            str(out),
        ],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert rest.returncode == 0, rest.stderr
    done, ref = Surface.load(path), Surface.load(tmp_path / "full" / "a_random_2d.npz")
    assert done.complete and done.fingerprint == ref.fingerprint
    assert np.array_equal(done.loss, ref.loss) and np.array_equal(done.accuracy, ref.accuracy)


def _run_folder(root: Path, name: str, seed: int) -> Path:
    folder = root / "runs" / name
    (folder / "ckpts").mkdir(parents=True)
    (folder / "config.json").write_text("{}\n")
    (folder / "metrics.csv").write_text("epoch,train_loss\n")
    _ckpt(folder / "ckpts" / "epoch_001.pt", seed)
    return _ckpt(folder / "final.pt", seed)


def test_default_names_and_titles_come_from_the_run_folder(tmp_path, monkeypatch):
    sgd, sam = _run_folder(tmp_path, "sgd", 0), _run_folder(tmp_path, "sam", 1)
    out = tmp_path / "figs"
    for ckpt in (sgd, sam):  # both final.pt, one folder: no collision
        r = run("plot2d", ckpt, "--x", "-1:1:3", "--y", "-1:1:3", "-o", out, *COMMON)
        assert r.exit_code == 0, r.output
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "sam_final_random_2d.npz",
        "sam_final_random_2d_contour.png",
        "sgd_final_random_2d.npz",
        "sgd_final_random_2d_contour.png",
    ]
    s = Surface.load(out / "sgd_final_random_2d.npz")
    assert s.metadata["run"] == "sgd" and s.metadata["label"] == "sgd (final.pt)"
    from landscape.plot.surface import default_title

    assert default_title(s) == "sgd (final.pt): random directions, filter-normalized"
    r = run("plot1d", sgd.parent / "ckpts" / "epoch_001.pt", "--x", "-1:1:3", "-o", out, *COMMON)
    assert r.exit_code == 0 and (out / "sgd_epoch_001_random_1d.npz").is_file(), r.output
    # a redraw without -o writes beside its surface file, never into the current folder
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    (out / "sgd_final_random_2d_contour.png").unlink()
    r = run("plot2d", "--from", out / "sgd_final_random_2d.npz", "--kind", "heatmap")
    assert r.exit_code == 0, r.output
    assert (out / "sgd_final_random_2d_heatmap.png").is_file() and not any(cwd.iterdir())
    r = run("plot1d", "--from", out / "sgd_epoch_001_random_1d.npz", "--name", "again")
    assert r.exit_code == 0 and (out / "again.png").is_file() and not any(cwd.iterdir()), r.output


def test_nonfinite_points_warn_once_and_the_rest_is_drawn(tmp_path):
    """A second checkpoint with huge weights: every point but alpha = 0 overflows to NaN."""
    a = _ckpt(tmp_path / "a.pt", 0, "mlp")
    model = build_model("mlp", hidden=[8])
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(3e38)
    save_checkpoint(
        tmp_path / "huge.pt",
        model,
        model_spec=ModelSpec("mlp", {"hidden": [8]}),
        data_spec=DataSpec("digits"),
    )
    out = tmp_path / "out"
    r = CliRunner().invoke(
        cli,
        [
            "plot1d",
            str(a),
            "--to",
            str(tmp_path / "huge.pt"),
            "--x",
            "-0.5:1:4",
            "-o",
            str(out),
            "--json",
            *COMMON,
        ],
    )
    assert r.exit_code == 0, r.output
    s = Surface.load(out / "a_interpolation_1d.npz")
    assert (
        s.complete
        and s.num_nonfinite == 3
        and np.isfinite(s.loss[1])
        and not np.isfinite(s.loss[[0, 2, 3]]).any()
    )
    assert np.isnan(s.accuracy[[0, 2, 3]]).all()
    warnings_ = [ln for ln in r.output.splitlines() if ln.startswith("warning:")]
    assert warnings_ == [
        f"warning: 3 of 4 points of {str(out / 'a_interpolation_1d.npz')!r} have a NaN or infinite loss; "
        "kept in the file, left out of the figures"
    ]
    assert (out / "a_interpolation_1d.png").is_file()
    res = json.loads(r.output[r.output.index("{") :])
    assert res["surfaces"][0]["points_nonfinite"] == 3 and np.isfinite(res["surfaces"][0]["loss_min"])


def _with_bn_stats(path: Path, mean: float, var: float) -> Path:
    model = build_model("cnn", width=4)
    model.load_state_dict(torch.load(path, weights_only=True)["state_dict"])
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.fill_(mean)
                m.running_var.fill_(var)
    save_checkpoint(path, model, model_spec=ModelSpec("cnn", {"width": 4}), data_spec=DataSpec("digits"))
    return path


def test_readme_interpolation_past_both_ends_has_no_nan(tmp_path):
    """``plot1d A --to B --x -0.5:1.5:N`` with variances 1.0 -> 0.0273 (the straight line: -0.459 at
    1.5, so NaN before): finite everywhere, and each end is its checkpoint; --mode weights is not."""
    a = _with_bn_stats(_ckpt(tmp_path / "a.pt", 0), 0.1, 1.0)
    b = _with_bn_stats(_ckpt(tmp_path / "b.pt", 1), -0.2, 0.0273)
    out = tmp_path / "out"
    r = run("plot1d", a, "--to", b, "--x", "-0.5:1.5:5", "-o", out, "--dtype", "float64", *COMMON)
    assert r.exit_code == 0 and "warning" not in r.output, r.output
    s = Surface.load(out / "a_interpolation_1d.npz")
    assert np.isfinite(s.loss).all() and np.isfinite(s.accuracy).all()
    evaluate = ["--json", "--dtype", "float64", "--samples", "64", "--batch-size", "32", "--device", "cpu"]
    loss_b = json.loads(run("evaluate", b, *evaluate).output)["loss"]
    assert s.xs[3] == 1.0 and s.loss[3] == pytest.approx(loss_b, rel=1e-10)
    r = run(
        "plot1d", a, "--to", b, "--x", "-0.5:1.5:5", "--mode", "weights", "--name", "w", "-o", out, *COMMON
    )
    assert r.exit_code == 0, r.output
    assert abs(Surface.load(out / "w.npz").loss[3] - loss_b) > 1e-3  # what --help says: not B at 1
    help_text = " ".join(run("plot1d", "--help").output.split())
    assert "variances geometrically" in help_text and "alpha = 1 is not the --to checkpoint" in help_text
