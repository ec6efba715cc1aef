"""Batch encoded examples into padded tensors, and order them so batches need little padding.

Why: padding every example to ``max_length`` wastes most of the compute on short-text datasets;
padding to the longest example in the batch (and grouping examples of similar length) does not.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import Sampler

from tunesmith.data.encode import IGNORE_INDEX

_PADDED = ("input_ids", "attention_mask", "token_type_ids", "position_ids")


@dataclass
class Collator:
    """``features -> {"input_ids": (B, T), "attention_mask": (B, T), "labels": (B,) | (B, T_l)}``.

    ``input_ids`` pad with ``pad_token_id``, ``attention_mask`` / ``token_type_ids`` with 0, on
    ``padding_side`` ("left" for batched generation with decoder-only models). ``T`` is the batch
    maximum, rounded up to ``pad_to_multiple_of``. Integer labels become a (B,) LongTensor. List
    labels pad with ``label_pad_id``: when every example's labels are as long as its input_ids
    (token classification, causal LM) they are padded exactly like input_ids, so position t of
    labels matches position t of input_ids; otherwise (seq2seq targets) to their own maximum on
    the right. Other keys are ignored.
    """

    pad_token_id: int
    label_pad_id: int = IGNORE_INDEX
    pad_to_multiple_of: int | None = None
    padding_side: str = "right"

    def __post_init__(self) -> None:
        if self.padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {self.padding_side!r}")

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if not features:
            raise ValueError("cannot collate an empty batch")
        length = self._round(max(len(f["input_ids"]) for f in features))
        batch: dict[str, torch.Tensor] = {}
        for key in _PADDED:
            if key in features[0]:
                value = self.pad_token_id if key == "input_ids" else 0
                rows = [f[key] for f in features]
                batch[key] = _pad(rows, length, value, self.padding_side)
        labelled = ["labels" in f for f in features]
        if any(labelled):
            if not all(labelled):
                raise ValueError("some examples in the batch have labels and some do not")
            batch["labels"] = self._labels([f["labels"] for f in features], features)
        return batch

    def _labels(self, labels: list[Any], features: Sequence[dict[str, Any]]) -> torch.Tensor:
        if all(isinstance(x, int) for x in labels):
            return torch.tensor(labels, dtype=torch.long)
        aligned = all(len(x) == len(f["input_ids"]) for x, f in zip(labels, features, strict=True))
        if aligned:
            length = self._round(max(len(f["input_ids"]) for f in features))
            return _pad(labels, length, self.label_pad_id, self.padding_side)
        length = self._round(max(len(x) for x in labels))
        return _pad(labels, length, self.label_pad_id, "right")

    def _round(self, n: int) -> int:
        m = self.pad_to_multiple_of
        return n if not m else math.ceil(n / m) * m


def _pad(rows: list[list[int]], length: int, value: int, side: str) -> torch.Tensor:
    out = torch.full((len(rows), length), value, dtype=torch.long)
    for i, row in enumerate(rows):
        if not row:
            continue
        t = torch.as_tensor(row, dtype=torch.long)
        if side == "right":
            out[i, : len(row)] = t
        else:
            out[i, length - len(row) :] = t
    return out


class LengthGroupedSampler(Sampler[int]):
    """Random order, but neighbours have similar lengths, so padded batches are nearly full.

    Each epoch: permute all indices (seeded by ``seed + epoch``), cut into mega-batches of
    ``50 * batch_size`` and sort each by length, longest first; the single longest example is
    moved to the very first batch so an out-of-memory error shows up at step one, not mid-epoch.
    Same ``seed`` and ``epoch`` give the same order (resumable runs); call :meth:`set_epoch`
    before each epoch.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int = 0, epoch: int = 0):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = epoch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        perm = torch.randperm(len(self.lengths), generator=g).tolist()
        mega = 50 * self.batch_size
        order: list[int] = []
        for start in range(0, len(perm), mega):
            chunk = perm[start : start + mega]
            order.extend(sorted(chunk, key=lambda i: -self.lengths[i]))
        if order:
            # Each mega-batch starts with its longest item; swap the overall longest to the front.
            heads = range(0, len(order), mega)
            top = max(heads, key=lambda k: self.lengths[order[k]])
            order[0], order[top] = order[top], order[0]
        return iter(order)
