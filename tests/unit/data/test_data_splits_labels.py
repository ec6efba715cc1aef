"""Stratified splits and the label vocabulary."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from tunesmith.config import parse_recipe
from tunesmith.data import LabelVocab, stratified_split
from tunesmith.data.pipeline import build_vocab
from tunesmith.errors import DataError

BASE_RECIPE = parse_recipe(
    {"model": "minilm", "task": "sequence_classification", "data": {"train": "x.jsonl"}}
)


def make(n_a: int, n_b: int) -> list[dict]:
    return [{"id": i, "label": "a" if i < n_a else "b"} for i in range(n_a + n_b)]


def ids(split: list[dict]) -> list[int]:
    return [r["id"] for r in split]


def test_split_proportions_per_label() -> None:
    recs = make(100, 50)
    out = stratified_split(recs, {"train": 0.8, "validation": 0.1, "test": 0.1}, seed=3)
    assert list(out) == ["train", "validation", "test"]
    counts = {k: Counter(r["label"] for r in v) for k, v in out.items()}
    assert counts["train"] == {"a": 80, "b": 40}
    assert counts["validation"] == {"a": 10, "b": 5}
    assert counts["test"] == {"a": 10, "b": 5}


def test_split_deterministic_disjoint_and_complete() -> None:
    recs = make(37, 23)
    fr = {"train": 0.7, "test": 0.3}
    one, two = stratified_split(recs, fr, seed=1), stratified_split(recs, fr, seed=1)
    assert {k: ids(v) for k, v in one.items()} == {k: ids(v) for k, v in two.items()}
    other = stratified_split(recs, fr, seed=2)
    assert set(ids(other["test"])) != set(ids(one["test"]))
    assert set(ids(one["train"])).isdisjoint(ids(one["test"]))
    assert sorted(ids(one["train"]) + ids(one["test"])) == list(range(60))
    assert ids(one["train"]) != sorted(ids(one["train"]))  # order is shuffled too


def test_split_rare_labels_do_not_starve_a_split() -> None:
    recs = [{"id": i, "label": str(i % 10)} for i in range(30)]  # 10 labels x 3
    out = stratified_split(recs, {"train": 0.9, "test": 0.1}, seed=0)
    assert (len(out["train"]), len(out["test"])) == (27, 3)


def test_split_unstratified_and_errors() -> None:
    recs = [{"id": i} for i in range(10)]
    out = stratified_split(recs, {"train": 0.5, "test": 0.5}, seed=0, label_key=None)
    assert len(out["train"]) == len(out["test"]) == 5
    with pytest.raises(ValueError, match="sum to 1"):
        stratified_split(recs, {"train": 0.5, "test": 0.4}, seed=0, label_key=None)
    with pytest.raises(DataError, match="record 0 has no 'label'"):
        stratified_split(recs, {"train": 1.0}, seed=0)


def test_label_vocab() -> None:
    vocab = LabelVocab.from_records([{"label": "neg"}, {"label": "pos"}, {"label": None}, {}])
    assert vocab.labels == ["neg", "pos"] and len(vocab) == 2
    assert vocab.encode("pos") == 1 and vocab.decode(0) == "neg"
    assert vocab.id2label == {0: "neg", 1: "pos"} and vocab.label2id == {"neg": 0, "pos": 1}
    # the saved form: a run's labels.json (train/setup.py) read back by build_vocab(saved=...)
    saved = json.loads(json.dumps(vocab.labels, indent=2))
    assert build_vocab(BASE_RECIPE, {"train": []}, saved=saved) == vocab
    with pytest.raises(
        DataError, match=r"unknown label 'meh' in dev\.tsv; known labels: \['neg', 'pos'\]"
    ):
        vocab.encode("meh", where="dev.tsv")


def test_label_vocab_tags_and_numbers() -> None:
    tags = LabelVocab.from_records([{"tags": ["O", "B-x"]}, {"tags": ["I-x", "O"]}], "tags")
    assert tags.labels == ["B-x", "I-x", "O"]
    nums = LabelVocab.from_records([{"label": 10}, {"label": 2}, {"label": "1"}])
    assert nums.labels == ["1", "2", "10"] and nums.encode(2) == 1
