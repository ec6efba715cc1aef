"""The fusion and multi-task benchmarks' settings build valid recipes (no training)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(folder: str):
    spec = importlib.util.spec_from_file_location(f"bench_{folder}_run", ROOT / folder / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fusion():
    return _load("fusion")


def test_fusion_rows_fuse_the_sources_and_the_target_adapter(fusion, tmp_path):
    assert fusion.ROWS == ["single_adapter", "full_ft", "fusion", "fusion_lr1e3", "fusion_joint"]
    sources = [str(tmp_path / "sources" / t) for t in fusion.CONFIG["sources"]["tasks"]]
    assert fusion.adapter_section("full_ft", 13, sources, tmp_path) is None
    assert fusion.adapter_section("single_adapter", 13, sources, tmp_path)["type"] == "pfeiffer"
    paper = fusion.adapter_section("fusion", 13, sources, tmp_path)
    assert paper["adapters"] == [*sources, str(tmp_path / "single_adapter" / "seed13")]
    fast = fusion.adapter_section("fusion_lr1e3", 13, sources, tmp_path)
    assert fast == paper and fusion.CONFIG["rows"]["fusion_lr1e3"]["lr"] == 1e-3
    joint = fusion.adapter_section("fusion_joint", 14, sources, tmp_path)
    assert joint["adapters"] == sources and joint["target"]["type"] == "pfeiffer"
    for row in fusion.ROWS:  # each row is a valid recipe
        section = fusion.adapter_section(row, 13, sources, tmp_path)
        extra = {"adapter": section} if section else {}
        data = {"train": {"path": "x.txt", "format": "label_text"}}
        r = fusion.recipe(data, tmp_path / row, 13, 1e-3, 3, 3, **extra)
        assert r.train.max_steps == 3


def test_multitask_per_task_adapter_row(tmp_path):
    multitask = _load("multitask")
    r = multitask.multi_recipe("adapters_per_task", tmp_path, multitask.Budget(quick=True))
    assert r.per_task_adapters and r.mixing.strategy == "temperature"
    assert r.optim.lr == multitask.ADAPTER_LR
    plain = multitask.multi_recipe("equal", tmp_path, multitask.Budget(quick=True))
    assert plain.adapter is None
