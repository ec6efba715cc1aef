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
    assert fusion.ROWS == [
        "single_adapter", "full_ft", "fusion", "fusion_lr1e3", "fusion_reviews", "fusion_joint"
    ]  # fmt: skip
    sources = [str(tmp_path / "sources" / t) for t in fusion.CONFIG["sources"]["tasks"]]
    assert fusion.adapter_section("full_ft", 13, sources, tmp_path) is None
    assert fusion.adapter_section("single_adapter", 13, sources, tmp_path)["type"] == "pfeiffer"
    paper = fusion.adapter_section("fusion", 13, sources, tmp_path)
    assert paper["adapters"] == [*sources, str(tmp_path / "single_adapter" / "seed13")]
    fast = fusion.adapter_section("fusion_lr1e3", 13, sources, tmp_path)
    assert fast == paper and fusion.CONFIG["rows"]["fusion_lr1e3"]["lr"] == 1e-3
    reviews = fusion.adapter_section("fusion_reviews", 13, sources, tmp_path)
    assert reviews["adapters"] == [*sources, str(tmp_path / "sources" / "reviews"),
                                   str(tmp_path / "single_adapter" / "seed13")]  # fmt: skip
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


def test_reviews_source_is_binarised_sentiment_without_the_prompt(fusion, tmp_path, monkeypatch):
    rows = [
        {"dataset": "amazon_polarity", "completion": "Negative",
         "prompt": "Title: Bad\nReview: It broke.\nIs the review positive or negative?\n"},
        {"dataset": "yelp_review_full", "completion": "5 stars",
         "prompt": "Review text:\nLovely  food\nand staff\n\nStars:\n"},
        {"dataset": "yelp_review_full", "completion": "3 stars",
         "prompt": "Review text:\nok\n\nStars:\n"},
        {"dataset": "app_reviews", "completion": "\u2605",
         "prompt": 'What would be the \u2605-rating of this review? "Crashes "always""\n'},
        {"dataset": "paws", "completion": "Yes", "prompt": "x"},
    ]  # fmt: skip
    (tmp_path / "t0_p3_sample").mkdir()
    (tmp_path / "t0_p3_sample" / "mixture.jsonl").write_text(
        "\n".join(__import__("json").dumps(r) for r in rows)
    )
    monkeypatch.setattr(fusion, "data_root", lambda: tmp_path)
    data = fusion.source_data("reviews", tmp_path / "runs")
    lines = Path(data["train"]["path"]).read_text().splitlines()
    assert lines == ["negative Bad. It broke.", "positive Lovely food and staff",
                     'negative Crashes "always"']  # fmt: skip
    assert fusion.source_data("trec", tmp_path) == fusion.DATA["trec"]
