"""The adapter benchmark's bookkeeping: per-invocation overrides and the seed-averaged summary."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks" / "adapters"))

from cases import Overrides, default_seeds, parse_epochs, recipe_dict  # noqa: E402
from tables import summarise, sweep_table  # noqa: E402


def row(dataset, method, seed, acc, pct=1.0):
    return {
        "dataset": dataset,
        "method": method,
        "seed": seed,
        "accuracy": acc,
        "trainable_pct": pct,
        "wall_s": 1.0,
        "train_wall_s": 1.0,
        "peak_rss_mb": 100.0,
    }


def test_overrides_reach_the_recipe_and_survive_the_command_line():
    over = Overrides({"rte": 7}, "/models/x", ("adapter.reduction_factor=8", "optim.lr=3e-4"))
    d = recipe_dict("rte/houlsby", seed=14, over=over)
    assert d["seed"] == 14 and d["model"] == "/models/x" and d["train"]["epochs"] == 7
    assert d["adapter"] == {"type": "houlsby", "reduction_factor": 8}
    assert d["optim"]["lr"] == pytest.approx(3e-4)  # a float, although YAML 1.1 reads a string
    assert d["optim"]["schedule"] == "linear"  # the dataset's base is kept under the overrides
    args = over.args()
    assert parse_epochs(args[args.index("--epochs") + 1 : args.index("--set")]) == {"rte": 7}
    # another dataset's epochs are untouched
    assert recipe_dict("sst2/full", over=over)["train"]["epochs"] != 7


def test_bad_overrides_fail_with_the_expected_form():
    with pytest.raises(SystemExit, match="DATASET=N"):
        parse_epochs(["mnli=3"])
    with pytest.raises(SystemExit, match="KEY.PATH=VALUE"):
        Overrides(sets=("optim.lr",)).changes()


def test_every_dataset_runs_several_seeds_but_the_peft_side_by_side_one():
    assert all(len(default_seeds(f"{d}/full")) >= 3 for d in ("sst2", "rte", "trec"))
    assert default_seeds("sst2/peft_lora") == [13]


def test_summary_averages_seeds_before_datasets():
    runs = [
        row("sst2", "full", 13, 0.90, 100.0),
        row("rte", "full", 13, 0.50, 100.0),
        row("rte", "full", 14, 0.60, 100.0),
        row("sst2", "houlsby", 13, 0.88),
        row("rte", "houlsby", 13, 0.58),
        row("rte", "houlsby", 14, 0.58),
    ]
    s = summarise(runs)
    # full: (0.90 + mean(0.50, 0.60)) / 2 = 0.725; houlsby: (0.88 + 0.58) / 2 = 0.73
    assert s["methods"]["full"]["mean_accuracy"] == pytest.approx(0.725)
    assert s["methods"]["houlsby"]["mean_accuracy"] == pytest.approx(0.73)
    # (0.88 - 0.90 + 0.58 - 0.55) / 2 = +0.005 -> +0.5 points
    assert s["methods"]["houlsby"]["vs_full_points"] == pytest.approx(0.5)
    assert s["houlsby_gap_to_full_points"] == pytest.approx(-0.5)
    rte = s["methods"]["full"]["per_dataset"]["rte"]
    assert rte["seeds"] == [13, 14] and rte["std"] == pytest.approx(0.0707, abs=1e-4)


def test_sweep_rows_compare_with_the_reference_full_runs():
    reference = {"runs": [row("sst2", "full", 13, 0.90, 100.0), row("trec", "full", 13, 0.96)]}
    variant = {"runs": [row("sst2", "houlsby", 13, 0.88), row("trec", "houlsby", 13, 0.95)]}
    lines = sweep_table([("variant", variant)], reference)
    (houlsby,) = [line for line in lines if "| houlsby |" in line]
    # two of three datasets: no mean, the difference says which datasets it covers
    assert "| – | -1.50 (SST-2, TREC) |" in houlsby
