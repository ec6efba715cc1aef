"""Batch cached teacher outputs alongside the usual inputs.

:class:`tunesmith.data.collate.Collator` keeps only inputs and labels; :class:`DistillCollator`
wraps it and also pads the teacher keys that :func:`~tunesmith.distill.cache.attach_teacher_outputs`
put on each example, aligned position by position with ``input_ids``:

* ``teacher_logits``: (B, C) for sequence classification, (B, T, C) for token classification;
* ``teacher_topk_logprobs`` (B, T, k) float16, ``teacher_topk_ids`` (B, T, k) int64 and
  ``teacher_topk_tail`` (B, T) float32 for causal LMs (row t = the teacher's prediction of token
  t+1; compare with ``logits[:, :-1]``).

Padding positions are zeros; the losses never read them (they are masked by labels).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from tunesmith.data.collate import Collator

__all__ = ["DistillCollator", "pad_teacher_outputs"]

TEACHER_KEYS = (
    "teacher_logits",
    "teacher_topk_logprobs",
    "teacher_topk_ids",
    "teacher_topk_tail",
)
_PER_TOKEN = ("teacher_topk_tail",)  # (T_i,) per example: a sequence axis, nothing else


def _pad_stack(rows: list[torch.Tensor], length: int | None, side: str) -> torch.Tensor:
    """Stack per-example (T_i, ...) tensors into (B, length, ...), zero padded on ``side``."""
    if rows[0].dim() == 1 and length is None:  # (C,) per example: no sequence axis
        return torch.stack(rows)
    length = length or max(r.shape[0] for r in rows)
    out = rows[0].new_zeros((len(rows), length, *rows[0].shape[1:]))
    for i, r in enumerate(rows):
        n = min(r.shape[0], length)
        if side == "right":
            out[i, :n] = r[:n]
        else:
            out[i, length - n :] = r[:n]
    return out


def pad_teacher_outputs(
    features: Sequence[dict[str, Any]], length: int | None = None, side: str = "right"
) -> dict[str, torch.Tensor]:
    """The teacher keys present in every feature, batched (see module docstring)."""
    batch: dict[str, torch.Tensor] = {}
    for key in TEACHER_KEYS:
        present = [key in f for f in features]
        if not any(present):
            continue
        if not all(present):
            raise ValueError(f"some examples in the batch have {key!r} and some do not")
        rows = [torch.as_tensor(f[key]) for f in features]
        seq_length = length if rows[0].dim() > 1 else None
        if key in _PER_TOKEN:
            seq_length = length or max(r.shape[0] for r in rows)
        batch[key] = _pad_stack(rows, seq_length, side)
        if key == "teacher_topk_ids":
            batch[key] = batch[key].long()
    return batch


@dataclass
class DistillCollator:
    """``base(features)`` plus the padded teacher keys (same length and side as ``input_ids``)."""

    base: Collator
    info: dict[str, Any] = field(default_factory=dict)  # e.g. the cache's bytes per token

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = self.base(features)
        length = batch["input_ids"].shape[1]
        batch.update(pad_teacher_outputs(features, length, self.base.padding_side))
        return batch
