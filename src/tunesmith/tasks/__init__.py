"""Task kinds: one module per kind, each registering its :class:`~tunesmith.tasks.base.TaskKind`
in :data:`tunesmith.registry.TASKS` (auto class, encoder, loss, model inputs, metrics).

To add a kind: write ``tasks/<kind>.py`` with its TaskKind and one ``TASKS.register`` call, and
import it below.
"""

from __future__ import annotations

from typing import Any

import torch

from tunesmith.registry import TASKS
from tunesmith.tasks import (  # noqa: F401  (each registers its kind)
    causal_lm,
    seq2seq,
    sequence_classification,
    token_classification,
)
from tunesmith.tasks.base import IGNORE_INDEX, TaskKind

__all__ = ["IGNORE_INDEX", "TASKS", "TaskKind", "model_inputs", "task_kind", "task_loss"]


def task_kind(name: str, key: str = "task") -> TaskKind:
    """The registered :class:`TaskKind` called ``name`` (a ConfigError at ``key`` if none)."""
    return TASKS.get(name, key)


def model_inputs(task: str, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The tensors a model's forward takes for task kind ``task`` (:meth:`TaskKind.model_inputs`)."""
    return task_kind(task).model_inputs(batch)


def task_loss(task: str, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The task loss of kind ``task`` (mean over the positions that carry a label)."""
    return task_kind(task).loss(logits, labels)
