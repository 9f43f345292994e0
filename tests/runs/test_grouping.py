"""Grouping runs by seed, per-group statistics, paired differences and the seed-study table."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from landscape.errors import ConfigError, ResultFileError
from landscape.plot.groups import plot_groups, plot_step_statistic, plot_test_accuracy
from landscape.runs.grouping import Grouping, group_key, group_runs, markdown_table, step_bands
from landscape.runs.stats import t_quantile


def _config(optimizer: str, seed: int, rho: float | None = None, dec: str | None = None, lr: float = 0.1):
    return {
        "model": {"name": "mlp", "kwargs": {"hidden": [8]}},
        "data": {"name": "digits", "split": "train", "data_dir": None, "subset": 64, "seed": seed},
        "optimizer": optimizer,
        "lr": lr,
        "momentum": 0.9,
        "weight_decay": 0.0,
        "rho": rho,
        "optimizer_kwargs": {"decomposition": dec} if dec else {},
        "batch_size": 16,
        "epochs": 1,
        "seed": seed,
        "save_every": 1,
        "eval_batch_size": 512,
        "dtype": "float32",
    }


def _fake_run(
    root: Path, name: str, config: dict, test_acc: float, ratios: list[float] | None = None
) -> Path:
    """A run folder as ``landscape train`` writes it (config, metrics, steps), with chosen numbers."""
    d = root / name
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps(config))
    (d / "metrics.csv").write_text(
        "epoch,step,train_loss,train_accuracy,test_loss,test_accuracy\n"
        f"0,0,2.3,0.1,2.3,0.1\n1,10,0.5,0.9,{1 - test_acc},{test_acc}\n"
    )
    lines = ["epoch,step,loss,lr,grad_norm_ratio,cosine,frac_larger"]
    for i, r in enumerate(ratios or []):
        lines.append(f"1,{i + 1},1.0,0.1,{r},0.9,0.5")
    (d / "steps.csv").write_text("\n".join(lines) + "\n")
    (d / "final.pt").write_bytes(b"")  # finished: compared (an unfinished run is left out)
    return d


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    for seed, acc in zip((0, 1, 2), (0.90, 0.92, 0.94)):
        _fake_run(root, f"sgd_seed{seed}", _config("sgd", seed), acc)
    for seed, acc in zip((0, 1, 2), (0.93, 0.94, 0.98)):
        _fake_run(
            root,
            f"sam-magnitude_global_rho0.2_seed{seed}",
            _config("sam-magnitude", seed, 0.2, "global"),
            acc,
            ratios=[1.0 + seed] * 10,
        )
    # a run made by another tool: a checkpoint and nothing else
    foreign = root / "their_model"
    foreign.mkdir()
    (foreign / "final.pt").write_bytes(b"not read")
    return root


def test_group_key_ignores_only_the_seed():
    assert group_key(_config("sgd", 0)) == group_key(_config("sgd", 7))
    assert group_key(_config("sgd", 0)) != group_key(_config("sgd", 0, lr=0.05))
    assert group_key(_config("sam", 0, 0.05)) != group_key(_config("sam", 0, 0.2))


def test_group_key_treats_the_sample_seed_as_the_data_it_selects():
    fixed_sample = [_config("sgd", s) for s in (0, 1)]
    for c in fixed_sample:
        c["data"]["seed"] = 5  # the same 64 examples for both runs
    assert group_key(fixed_sample[0]) == group_key(fixed_sample[1])
    assert group_key(fixed_sample[0]) != group_key(_config("sgd", 0))  # other examples: other group
    whole = [_config("sgd", s) for s in (0, 1)]
    whole[0]["data"].update(subset=None, seed=0)
    whole[1]["data"].update(subset=None, seed=0)  # seed of no subset: irrelevant
    assert group_key(whole[0]) == group_key(whole[1])


def test_groups_have_hand_computed_statistics(runs: Path):
    g = group_runs(runs)
    labels = [x.group for x in g.groups]
    assert labels == ["SAM-magnitude global rho=0.2", "SGD", "their_model (checkpoint only)"]
    sgd = g.group("SGD")
    assert sgd.n == 3 and sgd.seeds == [0, 1, 2]
    s = sgd.stats["test_accuracy"]
    half = t_quantile(0.95, 2) * 0.02 / math.sqrt(3)  # std of 0.90, 0.92, 0.94 is 0.02
    assert (s.mean, s.std) == pytest.approx((0.92, 0.02), abs=1e-12)
    assert (s.ci95_low, s.ci95_high) == pytest.approx((0.92 - half, 0.92 + half), abs=1e-12)
    # early/late step statistics of each run (constant per run: 1, 2, 3) -> mean 2, std 1
    mag = g.group("SAM-magnitude global rho=0.2").stats["grad_norm_ratio_late"]
    assert (mag.n, mag.mean, mag.std) == (3, pytest.approx(2.0), pytest.approx(1.0))
    assert math.isnan(sgd.stats["grad_norm_ratio_late"].mean)  # SGD logs none


def test_checkpoint_only_run_joins_as_its_own_group(runs: Path):
    g = group_runs(runs)
    foreign = g.group("their_model (checkpoint only)")
    assert foreign.n == 1 and foreign.seeds == [] and foreign.optimizer is None
    assert all(p.group != foreign.group for p in g.paired)  # no seed to pair by


def test_paired_differences_against_sgd_by_seed(runs: Path):
    g = group_runs(runs, baseline="sgd")
    assert g.baseline == "SGD"
    (acc,) = [p for p in g.paired if p.metric == "test_accuracy"]
    # differences 0.03, 0.02, 0.04 -> mean 0.03, std 0.01
    assert acc.seeds == [0, 1, 2] and acc.group == "SAM-magnitude global rho=0.2"
    half = t_quantile(0.95, 2) * 0.01 / math.sqrt(3)
    assert (acc.stats.mean, acc.stats.std) == pytest.approx((0.03, 0.01), abs=1e-12)
    assert (acc.stats.ci95_low, acc.stats.ci95_high) == pytest.approx((0.03 - half, 0.03 + half), abs=1e-12)


def test_baseline_that_names_no_group_is_refused(runs: Path):
    with pytest.raises(ConfigError, match="baseline='adam'.*choose one of"):
        group_runs(runs, baseline="adam")


def test_groups_differing_in_another_setting_get_telling_labels(tmp_path: Path):
    root = tmp_path / "runs"
    for seed in (0, 1):
        _fake_run(root, f"a{seed}", _config("sgd", seed, lr=0.1), 0.9)
        _fake_run(root, f"b{seed}", _config("sgd", seed, lr=0.05), 0.8)
    g = group_runs(root, baseline="SGD lr=0.1")
    assert sorted(x.group for x in g.groups) == ["SGD lr=0.05", "SGD lr=0.1"]
    with pytest.raises(ConfigError, match="matches several groups"):
        group_runs(root, baseline="sgd")


def test_two_runs_with_the_same_seed_in_a_group_are_refused(tmp_path: Path):
    root = tmp_path / "runs"
    _fake_run(root, "a", _config("sgd", 0), 0.9)
    _fake_run(root, "b", _config("sgd", 0), 0.8)
    with pytest.raises(ResultFileError, match="several runs with seed 0"):
        group_runs(root)


def test_save_writes_csvs_and_json_round_trips(runs: Path, tmp_path: Path):
    g = group_runs(runs)
    paths = g.save(tmp_path / "out")
    with open(paths["groups"], newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["group"] for r in rows] == [x.group for x in g.groups]
    for col in (
        "n",
        "test_accuracy_mean",
        "test_accuracy_std",
        "test_accuracy_ci95_low",
        "test_accuracy_ci95_high",
    ):
        assert col in rows[0]
    assert float(rows[1]["test_accuracy_mean"]) == pytest.approx(0.92)
    with open(paths["paired"], newline="") as fh:
        paired = list(csv.DictReader(fh))
    assert {"group", "baseline", "metric", "seeds", "mean", "ci95_low", "ci95_high"} <= set(paired[0])
    back = Grouping.from_json(paths["json"])
    assert back.group("SGD").stats["test_accuracy"] == g.group("SGD").stats["test_accuracy"]
    assert [p.row() for p in back.paired][0]["mean"] == pytest.approx(g.paired[0].stats.mean)
    assert not list((tmp_path / "out").glob(".*tmp*"))  # atomic writers leave no temporary files


def test_markdown_table_has_the_seed_study_layout(runs: Path):
    table = markdown_table(group_runs(runs), "test_accuracy")
    lines = table.splitlines()
    assert lines[2] == "| method | - | rho=0.2 |"
    assert "| SGD | 0.9200 ± 0.0200 (n=3) |  |" in lines
    assert "| SAM-magnitude global |  | 0.9500 ± 0.0265 (n=3) |" in lines
    with pytest.raises(ConfigError, match="metric='nope'"):
        markdown_table(group_runs(runs), "nope")


def test_step_bands_summarize_seeds_per_epoch(runs: Path):
    (band,) = step_bands(group_runs(runs), "grad_norm_ratio")  # SGD logs none, so one band
    assert band.group == "SAM-magnitude global rho=0.2" and band.epoch == [1.0] and band.n == [3]
    half = t_quantile(0.95, 2) * 1.0 / math.sqrt(3)  # per-run values 1, 2, 3
    assert band.mean == [pytest.approx(2.0)]
    assert (band.ci95_low[0], band.ci95_high[0]) == pytest.approx((2 - half, 2 + half))
    with pytest.raises(ConfigError, match="statistic='loss'"):
        step_bands(group_runs(runs), "loss")


def test_accuracy_figure_has_interval_bars_on_a_fitted_axis(runs: Path):
    g = group_runs(runs)
    fig = plot_test_accuracy(g)
    ax = fig.axes[0]
    low, high = ax.get_ylim()
    assert 0.8 < low < 0.9 and high - low < 0.2  # the differences show: not a 0-1 axis
    assert [t.get_text() for t in ax.get_xticklabels()] == ["SAM-magnitude global rho=0.2", "SGD"]
    sgd = g.group("SGD").stats["test_accuracy"]
    bars = [c for c in ax.collections if c.get_segments()]
    ends = sorted(tuple(seg[:, 1]) for c in bars for seg in c.get_segments())
    assert any(e == pytest.approx((sgd.ci95_low, sgd.ci95_high)) for e in ends)


def test_summary_figure_draws_bands_and_round_trips_its_data(runs: Path, tmp_path: Path):
    g = group_runs(runs)
    fig = plot_groups(g)
    assert len(fig.axes) == 6
    fig.savefig(tmp_path / "groups.png")
    back = Grouping.from_json(g.to_json(tmp_path / "groups.json"))
    assert step_bands(back, "cosine")[0].mean == step_bands(g, "cosine")[0].mean
    assert plot_step_statistic(back, "frac_larger").axes[0].get_legend() is not None


def _records(measure: bool) -> list:
    from landscape.runs.grouping import RunRecord

    out = []
    for opt, values in (("sgd", (1.0, 3.0)), ("sam", (2.0, 2.5))):
        for seed, v in zip((0, 1), values):
            metrics = {"test_accuracy": 0.9, "lambda_max": 10 * v}
            if measure:
                metrics["sharpness_worst"] = v
            out.append(RunRecord(f"{opt}{seed}", "", opt.upper(), seed, opt, None, None, metrics))
    return out


def test_auto_baseline_is_the_one_sgd_group_else_none():
    from landscape.runs.grouping import summarize_groups

    g = summarize_groups(_records(False), baseline="auto")
    assert g.baseline == "SGD" and {p.group for p in g.paired} == {"SAM"}
    without_sgd = [r for r in _records(False) if r.optimizer != "sgd"]
    assert summarize_groups(without_sgd, baseline="auto").baseline is None
    assert summarize_groups(without_sgd, baseline="auto").paired == []


def test_measures_get_a_table_and_a_panel_each(tmp_path: Path):
    from landscape.runs.grouping import summarize_groups

    g = summarize_groups(_records(True), baseline=None)
    assert g.table_metrics() == ["test_accuracy", "lambda_max", "sharpness_worst"]
    md = (g.save(tmp_path)["markdown"]).read_text()
    assert "sharpness_worst: mean ± std over seeds" in md and "| SGD | 2.0000 ± 1.4142 (n=2) |" in md
    assert (
        tmp_path / "paired.csv"
    ).read_text() == "group,baseline,metric,seeds,n,mean,std,ci95_low,ci95_high\n"
    fig = plot_groups(g)
    assert len(fig.axes) == 7  # the six panels and one per measure
    ax = fig.axes[6]
    assert ax.get_ylabel() == "worst-case sharpness"
    assert len(plot_groups(summarize_groups(_records(False), baseline=None)).axes) == 6


def test_groups_json_of_another_version_loads(runs: Path, tmp_path: Path):
    """A statistic added since (or one dropped) must not break ``compare --from`` on older files."""
    doc = group_runs(runs).to_dict()
    for g in doc["groups"]:
        for s in g["stats"].values():
            s["p_value"] = 0.5  # a newer statistic
            del s["ci95_high"]  # one this file predates
    for p in doc["paired"]:
        p["stats"]["p_value"] = 0.01
    path = tmp_path / "groups.json"
    path.write_text(json.dumps(doc))
    back = Grouping.from_json(path)
    s = back.group("SGD").stats["test_accuracy"]
    assert (s.n, s.mean) == (3, pytest.approx(0.92)) and math.isnan(s.ci95_high)
    assert not hasattr(s, "p_value") and back.paired[0].stats.n == 3


def test_paired_csv_has_one_column_order_with_or_without_lines(runs: Path, monkeypatch):
    from dataclasses import asdict

    from landscape.runs.grouping import PAIRED_COLUMNS
    from landscape.runs.stats import Summary

    # the columns follow PAIRED_COLUMNS, not the order of the statistics' dictionary
    monkeypatch.setattr(Summary, "to_dict", lambda self: dict(reversed(asdict(self).items())))
    with_lines = group_runs(runs).paired_csv().splitlines()
    without = group_runs(runs, baseline=None).paired_csv().splitlines()
    assert len(with_lines) > 1 and without == [",".join(PAIRED_COLUMNS)]
    assert with_lines[0] == without[0] == "group,baseline,metric,seeds,n,mean,std,ci95_low,ci95_high"


def test_paired_differences_of_any_group_pairs_by_seed():
    """The demo's pairs (moved from its own group_table and paired_differences): hand-computed."""
    from landscape.report import verdict
    from landscape.runs.grouping import RunRecord, pair_by_seed, summarize_groups

    t_975_2 = 4.302652729749464  # Student t quantile, 97.5%, 2 degrees of freedom (table value)
    records = []
    for group, values in {"SGD": [10.0, 12.0, 11.0], "SAM rho=0.05": [7.0, 10.0, 7.0]}.items():
        opt = "sgd" if group == "SGD" else "sam"
        for seed, v in enumerate(values):
            metrics = {"lambda_max": v, "trace": 10 * v, "test_accuracy": 0.9}
            records.append(RunRecord(f"{opt}{seed}", "", group, seed, opt, None, None, metrics))
    grouping = summarize_groups(records, baseline=None)
    assert [g.group for g in grouping.groups] == ["SGD", "SAM rho=0.05"]
    sgd = grouping.group("SGD")
    assert sgd.n == 3 and sgd.stats["lambda_max"].mean == pytest.approx(11.0)
    assert sgd.stats["lambda_max"].std == pytest.approx(1.0)
    row = sgd.row(grouping.metrics)
    assert {"lambda_max_ci95_low", "lambda_max_ci95_high", "test_accuracy_std"} <= set(row)
    paired = pair_by_seed(records, [("SAM rho=0.05", "SGD")], grouping.metrics)
    (lam,) = [p for p in paired if p.metric == "lambda_max"]
    # differences by seed: -3, -2, -4 -> mean -3, std 1
    assert lam.stats.n == 3 and lam.stats.mean == pytest.approx(-3.0) and lam.stats.std == pytest.approx(1.0)
    assert lam.stats.ci95_high == pytest.approx(-3.0 + t_975_2 / math.sqrt(3), rel=1e-12)
    assert verdict(lam.stats.ci95_low, lam.stats.ci95_high).startswith("negative")
    assert pair_by_seed(records, [("SAM rho=0.05", "missing")], grouping.metrics) == []
