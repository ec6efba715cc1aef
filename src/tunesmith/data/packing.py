"""Sequence packing for causal-LM fine-tuning: several short examples in one row, no padding
between them and no attention across them.

Rows are filled by best-fit decreasing (longest example first, into the row with the least room
that still fits it), so almost every row is ``max_length`` tokens long. Each packed row carries
``position_ids`` that restart at 0 for every example; a model given ``position_ids`` and no
``attention_mask`` then attends only within each example (transformers' masking utilities turn
the position resets into a block-diagonal causal mask, for SDPA, eager and flash attention
alike; :func:`tunesmith.tasks.causal_lm.attends_within_examples` checks that a model does).
Training on SDPA then runs attention per example instead of under that mask
(:mod:`tunesmith.packedattn`).
The first token of every example gets label -100, so no example is trained to predict its start
from the previous example's end.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tunesmith.data.encode import IGNORE_INDEX

__all__ = ["pack_examples", "packing_efficiency"]


def pack_examples(examples: Sequence[dict[str, Any]], max_length: int) -> list[dict[str, Any]]:
    """Causal-LM examples (``input_ids``, ``labels``) -> packed rows of at most ``max_length``
    tokens with ``input_ids``, ``labels``, ``position_ids`` and ``attention_mask`` (all ones: it
    only counts real tokens; the loop does not pass it to the model for packed rows).
    Every token of every example is kept; the order of rows is deterministic."""
    if max_length < 1:
        raise ValueError(f"max_length must be >= 1, got {max_length}")
    order = sorted(range(len(examples)), key=lambda i: (-len(examples[i]["input_ids"]), i))
    bins: list[list[int]] = []
    room: list[int] = []
    for i in order:
        n = len(examples[i]["input_ids"])
        if n > max_length:
            raise ValueError(f"example {i} has {n} tokens, more than max_length={max_length}")
        best = -1
        for b, r in enumerate(room):
            if n <= r and (best < 0 or r < room[best]):
                best = b
        if best < 0:
            bins.append([i])
            room.append(max_length - n)
        else:
            bins[best].append(i)
            room[best] -= n
    return [_row([examples[i] for i in members]) for members in bins]


def _row(parts: list[dict[str, Any]]) -> dict[str, Any]:
    ids: list[int] = []
    labels: list[int] = []
    positions: list[int] = []
    for ex in parts:
        n = len(ex["input_ids"])
        ids += list(ex["input_ids"])
        lab = list(ex["labels"])
        lab[0] = IGNORE_INDEX  # never predicted from the previous example's last token
        labels += lab
        positions += list(range(n))
    return {
        "input_ids": ids,
        "labels": labels,
        "position_ids": positions,
        "attention_mask": [1] * len(ids),
    }


def packing_efficiency(rows: Sequence[dict[str, Any]], max_length: int) -> float:
    """Real tokens / (rows x max_length): the share of a full-length batch that is not padding."""
    if not rows:
        return 0.0
    return sum(len(r["input_ids"]) for r in rows) / (len(rows) * max_length)
