"""One task's view of a model with per-task heads.

A model has per-task heads in one of two ways (:mod:`tunesmith.heads`): a
:class:`~tunesmith.heads.multihead.MultiHeadModel` keeps a head module per task and takes
``task=`` in its forward; a transformers classification model keeps one label projection and swaps
another task's in for a call (:mod:`tunesmith.heads.swap`). :class:`TaskView` hands either to code
written for single-task models (evaluation, prediction).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

from tunesmith.heads.swap import logits_per_head

__all__ = ["TaskView"]


class TaskView(nn.Module):
    """``model`` seen through one task, with a forward like a single-task transformers model.

    ``task``: the head a multi-head model routes to (its forward takes ``task=``); ``head``: a
    label projection swapped in for the call (:func:`~tunesmith.heads.swap.logits_per_head`);
    ``label_ids``: logits of other labels masked to -inf (a shared head evaluated task by task).
    ``model`` is a submodule, so ``.eval()`` / ``.train()`` reach it.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        task: str | None = None,
        head: Mapping[str, torch.Tensor] | None = None,
        label_ids: Sequence[int] | None = None,
    ):
        super().__init__()
        self.model = model
        self.task = task
        self.head = dict(head) if head is not None else None
        self.label_ids = list(label_ids) if label_ids is not None else None

    def forward(self, **inputs: torch.Tensor) -> Any:
        if self.task is not None:
            inputs = {**inputs, "task": self.task}
        if self.head is None and self.label_ids is None:
            return self.model(**inputs)  # the model's own output object
        if self.head is None:
            logits = self.model(**inputs).logits
        else:
            (logits,) = logits_per_head(self.model, [self.head], inputs)
        if self.label_ids is not None:
            keep = torch.zeros(logits.shape[-1], dtype=torch.bool, device=logits.device)
            keep[self.label_ids] = True
            logits = logits.masked_fill(~keep, float("-inf"))
        return SimpleNamespace(logits=logits)
