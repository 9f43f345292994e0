"""Run comparison (direction vs magnitude): statistics equal the logged steps, lambda_max the dense one."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from landscape.cli.main import cli
from landscape.data.datasets import DataSpec
from landscape.errors import ConfigError, ResultFileError
from landscape.models.builders import ModelSpec
from landscape.runs import Comparison, compare_runs, summarize_run
from landscape.training import TrainConfig, train


def _config(opt, seed=3):
    return TrainConfig(
        model=ModelSpec("mlp", {"hidden": [4]}),
        data=DataSpec("digits", subset=128, seed=0),
        optimizer=opt,
        lr=0.1,
        batch_size=16,
        epochs=2,
        seed=seed,
    )


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for opt in ("sgd", "sam", "sam-magnitude"):
        train(_config(opt), root / opt, quiet=True)
    return root


def test_statistics_are_the_logged_means(runs_dir):
    s = summarize_run(runs_dir / "sam", early_late_fraction=0.25)
    steps = pd.read_csv(runs_dir / "sam" / "steps.csv")
    k = round(0.25 * len(steps))
    for key in ("grad_norm_ratio", "cosine", "frac_larger"):
        assert s.stats_mean[key] == pytest.approx(steps[key].mean(), rel=1e-12)
        assert s.stats_early[key] == pytest.approx(steps[key].iloc[:k].mean(), rel=1e-12)
        assert s.stats_late[key] == pytest.approx(steps[key].iloc[-k:].mean(), rel=1e-12)
        assert s.epoch_stats[key] == pytest.approx(steps.groupby("epoch")[key].mean().tolist(), rel=1e-12)
    metrics = pd.read_csv(runs_dir / "sam" / "metrics.csv")
    assert s.test_accuracy == pytest.approx(metrics["test_accuracy"].iloc[-1])
    assert (s.epochs, s.steps) == (2, 16)
    assert summarize_run(runs_dir / "sgd").stats_mean == {}


def _dense_lambda_max(checkpoint, samples, seed):
    from landscape.objective.loading import objective_from_checkpoint

    obj, _, _ = objective_from_checkpoint(
        checkpoint, samples=samples, seed=seed, device="cpu", dtype=torch.float64
    )
    names, params = obj.param_names, [p.detach() for p in obj.params]
    sizes = [p.numel() for p in params]
    ((x, y, _),) = list(obj.batches())

    def loss_of(flat):
        chunks = torch.split(flat, sizes)
        return obj.functional_batch_loss({n: c.view_as(p) for n, c, p in zip(names, chunks, params)}, x, y)

    h = torch.func.hessian(loss_of)(torch.cat([p.flatten() for p in params]))
    return float(torch.linalg.eigvalsh(h)[-1])


def test_lambda_max_matches_dense_hessian(runs_dir):
    comp = compare_runs(runs_dir, sharpness_samples=64, seed=1, tol=1e-6)
    assert [r.name for r in comp.runs] == ["sam", "sam-magnitude", "sgd"]
    for r in comp.runs:
        ref = _dense_lambda_max(runs_dir / r.name / "final.pt", 64, 1)
        # the comparison runs in the checkpoint's float32; the reference in float64
        assert r.lambda_max == pytest.approx(ref, rel=1e-4)
        assert r.lambda_max_samples == 64


SHARPNESS = ["--samples", "64", "--top-k", "2", "--tol", "1e-8", "--device", "cpu", "--dtype", "float64"]


def _copy_run(runs_dir, tmp_path, name="sam"):
    import shutil

    run = tmp_path / "runs" / name
    shutil.copytree(runs_dir / name, run)
    return run


def _store_sharpness(checkpoint, run, *extra):
    """What a user does: 'landscape sharpness CKPT -o RUN' leaves RUN/sharpness.json."""
    r = CliRunner().invoke(cli, ["sharpness", str(checkpoint), *SHARPNESS, *extra, "-o", str(run)])
    assert r.exit_code == 0, r.output
    return json.loads((run / "sharpness.json").read_text())


def test_sharpness_json_of_the_final_weights_is_used(runs_dir, tmp_path):
    run = _copy_run(runs_dir, tmp_path)
    doc = _store_sharpness(run / "final.pt", run)
    s = summarize_run(run)
    assert s.lambda_max == doc["eigenvalues"][0] and s.lambda_max_samples == 64
    assert s.lambda_max == pytest.approx(_dense_lambda_max(run / "final.pt", 64, 0), rel=1e-8)
    assert s.lambda_max_source == str(run / "sharpness.json") and s.lambda_max_note is None
    assert s.lambda_max_settings["checkpoint_digest"] == doc["checkpoint_digest"]
    assert (s.lambda_max_settings["which"], s.lambda_max_settings["subset"]) == ("LA", 64)


def _stale(runs_dir, tmp_path, case):
    run = _copy_run(runs_dir, tmp_path)
    if case == "earlier-checkpoint":
        _store_sharpness(run / "ckpts" / "epoch_001.pt", run)
        why = "other weights"
    elif case == "which-SA":
        _store_sharpness(run / "final.pt", run, "--which", "SA")
        why = "which='SA'"
    elif case == "before-train-overwrite":
        _store_sharpness(run / "final.pt", run)
        train(_config("sam", seed=4), run, overwrite=True, quiet=True)
        assert (run / "sharpness.json").is_file()
        why = "other weights"
    elif case == "no-digest":  # the files written before the digest was recorded
        (run / "sharpness.json").write_text(json.dumps({"eigenvalues": [12.5, 3.0], "samples": 99}))
        why = "no checkpoint digest"
    else:
        raise AssertionError(case)
    return run, why


STALE = ["earlier-checkpoint", "which-SA", "before-train-overwrite", "no-digest"]


@pytest.mark.parametrize("case", STALE)
def test_stale_sharpness_json_leaves_the_cell_empty_with_a_warning(runs_dir, tmp_path, case):
    run, why = _stale(runs_dir, tmp_path, case)
    s = summarize_run(run)
    assert s.lambda_max is None and s.lambda_max_source is None
    assert s.lambda_max_note.startswith("run 'sam': lambda_max left empty") and why in s.lambda_max_note
    out = tmp_path / "cmp"
    r = CliRunner().invoke(cli, ["compare-magnitude", str(run.parent), "-o", str(out)])
    assert r.exit_code == 0, r.output
    warnings = [line for line in r.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "run 'sam'" in warnings[0] and why in warnings[0]
    saved = json.loads((out / "comparison.json").read_text())["runs"][0]
    assert saved["lambda_max"] is None and why in saved["lambda_max_note"]
    assert pd.read_csv(out / "comparison.csv")["lambda_max"].isna().all()


@pytest.mark.parametrize("case", STALE)
def test_stale_sharpness_json_is_recomputed_with_sharpness_n(runs_dir, tmp_path, case):
    run, _ = _stale(runs_dir, tmp_path, case)
    s = compare_runs(run.parent, sharpness_samples=64, seed=0, tol=1e-6).runs[0]
    assert s.lambda_max == pytest.approx(_dense_lambda_max(run / "final.pt", 64, 0), rel=1e-4)
    assert s.lambda_max_source == "computed" and s.lambda_max_note is None
    assert s.lambda_max_settings["subset"] == 64 and s.lambda_max_settings["tol"] == 1e-6


def test_sharpness_n_uses_a_stored_result_only_on_the_same_sample(runs_dir, tmp_path):
    run = _copy_run(runs_dir, tmp_path)
    doc = _store_sharpness(run / "final.pt", run)
    same = compare_runs(run.parent, sharpness_samples=64, seed=0, tol=1e-6).runs[0]
    assert same.lambda_max_source == str(run / "sharpness.json")
    assert same.lambda_max == doc["eigenvalues"][0]
    other = compare_runs(run.parent, sharpness_samples=32, seed=0, tol=1e-6).runs[0]
    assert other.lambda_max_source == "computed" and other.lambda_max_samples == 32
    assert other.lambda_max == pytest.approx(_dense_lambda_max(run / "final.pt", 32, 0), rel=1e-4)


def test_cli_writes_table_figure_and_redraws(runs_dir, tmp_path):
    runner = CliRunner()
    out = tmp_path / "cmp"
    r = runner.invoke(cli, ["compare-magnitude", str(runs_dir), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[0].split()[:3] == ["run", "optimizer", "test_acc"]
    per_run = {"comparison.json", "comparison.csv", "comparison.png"}
    grouped = {"groups.json", "groups.csv", "paired.csv", "runs_grouped.csv", "groups.md", "groups.png"}
    assert {p.name for p in out.iterdir()} == per_run | grouped
    table = pd.read_csv(out / "comparison.csv")
    assert table["run"].tolist() == ["sam", "sam-magnitude", "sgd"]
    assert np.all((table["frac_larger_mean"].dropna() >= 0) & (table["frac_larger_mean"].dropna() <= 1))
    loaded = Comparison.load(out / "comparison.json")
    assert loaded.runs[0].stats_mean == pytest.approx(summarize_run(runs_dir / "sam").stats_mean)
    (out / "comparison.png").unlink()
    redraw = runner.invoke(
        cli,
        [
            "compare-magnitude",
            str(runs_dir),
            "--from",
            str(out / "comparison.json"),
            "-o",
            str(out),
            "--format",
            "pdf",
        ],
    )
    assert redraw.exit_code == 0, redraw.output
    assert (out / "comparison.pdf").read_bytes()[:4] == b"%PDF"
    bad = runner.invoke(cli, ["compare-magnitude", str(tmp_path / "none")])
    assert bad.exit_code == 1 and "does not exist" in bad.output
    empty = tmp_path / "empty"
    empty.mkdir()
    bad2 = runner.invoke(cli, ["compare-magnitude", str(empty)])
    assert bad2.exit_code == 1 and "no run folders" in bad2.output
    with pytest.raises(ResultFileError, match="not a comparison.json"):
        Comparison.load(out / "comparison.csv")


def test_damaged_run_folders_give_one_line_errors(runs_dir, tmp_path):
    import shutil

    run = tmp_path / "runs" / "sam"
    shutil.copytree(runs_dir / "sam", run)
    (run / "metrics.csv").write_text("loss,accuracy\n0.1,0.9\n")
    r = CliRunner().invoke(cli, ["compare-magnitude", str(tmp_path / "runs")])
    assert (
        r.exit_code == 1 and r.output.startswith("error: ") and "lack the column(s) epoch, step" in r.output
    )
    (run / "metrics.csv").write_text("")
    r = CliRunner().invoke(cli, ["compare-magnitude", str(tmp_path / "runs")])
    assert r.exit_code == 1 and "empty metrics.csv" in r.output


# -- figures draw the comparison's numbers, into the caller's axes --------------------------------
def test_plot_functions_draw_the_numbers_into_a_given_ax(runs_dir):
    from matplotlib.figure import Figure

    from landscape.plot.compare import PANELS, plot_comparison, plot_final_values, plot_statistic_by_epoch

    comparison = compare_runs(runs_dir)
    fig = Figure()
    ax = fig.add_subplot()
    assert plot_statistic_by_epoch(comparison, "cosine", ax=ax) is fig
    lines = {line.get_label(): line for line in ax.get_lines() if not line.get_label().startswith("_")}
    assert sorted(lines) == ["sam", "sam-magnitude"]  # SGD logs no SAM statistics
    for run in comparison.runs:
        if run.name in lines:
            assert list(lines[run.name].get_xdata()) == run.epoch_stats["epoch"] == [1.0, 2.0]
            assert list(lines[run.name].get_ydata()) == run.epoch_stats["cosine"]

    fig2 = Figure()
    ax2 = fig2.add_subplot()
    assert plot_final_values(comparison, "test_accuracy", ax=ax2) is fig2
    heights = [bar.get_height() for bar in ax2.patches]
    assert heights == [r.test_accuracy for r in comparison.runs]
    assert [t.get_text() for t in ax2.get_xticklabels()] == ["sam", "sam-magnitude", "sgd"]

    fig3 = Figure()
    ax3 = fig3.add_subplot()
    assert plot_comparison(comparison, ax=ax3, panel="lambda_max") is fig3
    assert [t.get_text() for t in ax3.texts] == ["n/a"] * 3  # no sharpness computed: no bar pretends a value
    whole = plot_comparison(comparison)
    assert [a.get_title() for a in whole.axes] == [
        "fraction of |g_SAM,i| > |g_SGD,i|",
        "||g_SAM|| / ||g_SGD||",
        "cos(g_SAM, g_SGD)",
        "test accuracy",
        "train loss",
        "lambda_max (Hessian)",
    ]
    assert len(PANELS) == 6
    with pytest.raises(ConfigError, match="panel='loss' is not valid"):
        plot_comparison(comparison, ax=ax3, panel="loss")


def test_comparison_csv_quotes_a_run_name_with_a_comma(runs_dir, tmp_path):
    import shutil

    shutil.copytree(runs_dir / "sam", tmp_path / "runs" / "sam, rho=0.05")
    comparison = compare_runs(tmp_path / "runs")
    paths = comparison.save(tmp_path / "out")
    table = pd.read_csv(paths["csv"])
    assert table["run"].tolist() == ["sam, rho=0.05"]
    assert table["test_accuracy"].tolist() == [comparison.runs[0].test_accuracy]
    assert table.columns.tolist() == list(comparison.runs[0].row())
