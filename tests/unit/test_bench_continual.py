"""The continual benchmark's settings and bookkeeping: today's recipe keys, pruned run folders."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import pytest

from tunesmith.continual import ContinualConfig

HERE = Path(__file__).resolve().parents[2] / "benchmarks" / "continual"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_continual_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    return _load("run")


def test_benchmark_settings_use_the_per_method_sections(bench, caplog):
    """Issue 18: run.py used the flat keys (ewc_lambda, ...) that log deprecation warnings."""
    with caplog.at_level(logging.WARNING):
        for method in bench.METHODS:
            ContinualConfig.parse({"method": method, **bench.CONTINUAL.get(method, {})})
        for method, settings in bench.LM_METHODS.items():
            ContinualConfig.parse({"method": method, "heads": "shared", **settings})
    assert not [r for r in caplog.records if "deprecated" in r.getMessage()]
    # the results were measured on the raw Fisher: the benchmark says so explicitly
    cfg = ContinualConfig.parse({"method": "ewc", **bench.CONTINUAL["ewc"]})
    assert cfg.params["ewc"].weight == bench.EWC_LAMBDA
    assert cfg.params["ewc"].fisher.normalize == "none"


def test_prune_run_deletes_weights_and_keeps_the_matrix(bench, tmp_path):
    out = tmp_path / "ewc-s13"
    for rel in (
        "stages/0-a/best/model.safetensors",
        "stages/0-a/checkpoints/step-10/optimizer.pt",
        "state/stage-1.safetensors",
        "heads/a.safetensors",
        "init/1-b/model.safetensors",
        "data/a/train.jsonl",
        "stages/0-a/stray.bin",
    ):
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text("x")
    for keep in ("matrix.json", "matrix.md", "rows/0.json", "stages/0-a/summary.json"):
        (out / keep).parent.mkdir(parents=True, exist_ok=True)
        (out / keep).write_text("{}")
    bench.prune_run(out)
    left = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert left == ["matrix.json", "matrix.md", "rows/0.json", "stages/0-a/summary.json"]


def test_sweep_table_compares_every_lambda_with_naive():
    sweep = _load("sweep_lambda")
    runs = [
        {"method": "ewc", "lambda": 0.3, "acc": 0.69, "bwt": -0.002, "old_before": 0.886,
         "old_after": 0.884, "new_after": 0.5},
        {"method": "naive", "lambda": None, "acc": 0.68, "bwt": -0.058, "old_before": 0.886,
         "old_after": 0.828, "new_after": 0.536},
    ]  # fmt: skip
    lines = sweep.table(runs).splitlines()
    assert lines[2].startswith("| naive |") and lines[2].endswith("| 1.00 |")
    assert lines[3].startswith("| 0.3 | 69.0 | -0.2 | 88.4 (88.6) | 50.0 | 0.03 |")
