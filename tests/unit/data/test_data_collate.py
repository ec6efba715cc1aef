"""Collator padding and the length-grouped sampler."""

from __future__ import annotations

import random

import torch

from tunesmith.data import Collator, LengthGroupedSampler

X = -100


def test_collate_int_labels_right_padding() -> None:
    feats = [
        {"input_ids": [5, 6], "attention_mask": [1, 1], "labels": 1, "id": "ignored"},
        {"input_ids": [7, 8, 9, 4], "attention_mask": [1, 1, 1, 1], "labels": 0},
    ]
    batch = Collator(pad_token_id=0)(feats)
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    assert batch["input_ids"].tolist() == [[5, 6, 0, 0], [7, 8, 9, 4]]
    assert batch["attention_mask"].tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]
    assert batch["labels"].tolist() == [1, 0] and batch["labels"].dtype == torch.long


def test_collate_aligned_labels_left_and_multiple() -> None:
    feats = [
        {"input_ids": [5, 6], "attention_mask": [1, 1], "labels": [X, 6]},
        {"input_ids": [7, 8, 9], "attention_mask": [1, 1, 1], "labels": [X, 8, 9]},
    ]
    batch = Collator(pad_token_id=0, padding_side="left", pad_to_multiple_of=4)(feats)
    assert batch["input_ids"].tolist() == [[0, 0, 5, 6], [0, 7, 8, 9]]
    assert batch["attention_mask"].tolist() == [[0, 0, 1, 1], [0, 1, 1, 1]]
    assert batch["labels"].tolist() == [[X, X, X, 6], [X, X, 8, 9]]


def test_collate_seq2seq_labels_pad_to_their_own_length() -> None:
    feats = [
        {"input_ids": [1, 2, 3, 4, 5], "attention_mask": [1] * 5, "labels": [7]},
        {"input_ids": [1, 2], "attention_mask": [1, 1], "labels": [7, 8, 2]},
    ]
    batch = Collator(pad_token_id=9)(feats)
    assert batch["input_ids"].shape == (2, 5) and batch["labels"].shape == (2, 3)
    assert batch["input_ids"][1].tolist() == [1, 2, 9, 9, 9]
    assert batch["labels"].tolist() == [[7, X, X], [7, 8, 2]]


def test_collate_keeps_token_type_ids_and_unlabelled() -> None:
    feats = [{"input_ids": [1], "attention_mask": [1], "token_type_ids": [0]}] * 2
    batch = Collator(pad_token_id=0)(feats)
    assert set(batch) == {"input_ids", "attention_mask", "token_type_ids"}


def test_length_grouped_sampler() -> None:
    rng = random.Random(0)
    lengths = [rng.randint(1, 100) for _ in range(1000)]
    s = LengthGroupedSampler(lengths, batch_size=4, seed=7)
    first = list(s)
    assert sorted(first) == list(range(1000)) and len(s) == 1000
    assert list(LengthGroupedSampler(lengths, batch_size=4, seed=7)) == first
    assert lengths[first[0]] == max(lengths)
    s.set_epoch(1)
    assert list(s) != first
    s.set_epoch(0)
    assert list(s) == first

    def padding(order: list[int]) -> int:
        batches = [order[i : i + 4] for i in range(0, len(order), 4)]
        return sum(
            max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches
        )

    shuffled = list(range(1000))
    random.Random(1).shuffle(shuffled)
    assert padding(first) < padding(shuffled) / 10
