"""Logits of a model under other label projections (the old tasks' heads), for LwF and replay.

A copy of :func:`tunesmith.continual.heads.logits_per_head` kept in the objectives layer so that
no loss term imports the task-sequence runner; it goes when the per-task head helpers become one
models-layer module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torch.func import functional_call

__all__ = ["logits_per_head"]


def logits_per_head(
    model: nn.Module,
    heads: Sequence[Mapping[str, torch.Tensor]],
    inputs: Mapping[str, torch.Tensor],
) -> list[torch.Tensor]:
    """``model``'s logits under each head in ``heads``: one forward with the heads stacked.

    inputs: the model's forward kwargs (B, T). Returns ``[(B, C_k)]`` in the order of ``heads``.
    """
    if not heads:
        return []
    ref = next(p for p in model.parameters())
    names = list(heads[0])
    stacked = {
        n: torch.cat([h[n].to(device=ref.device, dtype=ref.dtype) for h in heads]) for n in names
    }
    sizes = [int(h[names[0]].shape[0]) for h in heads]
    logits = functional_call(model, stacked, args=(), kwargs=dict(inputs), strict=False).logits
    return list(torch.split(logits, sizes, dim=-1))
