"""Multi-task runs with one adapter and one head per task on a frozen base
(``task: multi_head`` + ``adapter: {..., per_task: true}``): the mixture mode's data, plan and
evaluation, a :class:`~tunesmith.adapters.PerTaskAdapterModel` as the model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from tunesmith.adapters import PerTaskAdapterModel
from tunesmith.heads import HeadSpec
from tunesmith.models import resolve_model
from tunesmith.pooling import checkpoint_pooling
from tunesmith.precision import DTYPES
from tunesmith.tasks import task_kind
from tunesmith.train.modes.mixture import Mixture


@dataclass
class PerTaskAdapters(Mixture):
    """A batch goes to its task's adapter and head (the model's ``forward(task=...)``)."""

    def build_model(self) -> nn.Module:
        r = self.recipe
        labels = self.labels()
        found = checkpoint_pooling(resolve_model(r.model_source))
        heads = {t.name: HeadSpec(t.head, labels[t.name], _pooling(t, found)) for t in r.tasks}
        _, _, config = r.adapter_settings()
        dtype = DTYPES.get(r.model_options.dtype)
        kwargs = {"dtype": dtype} if dtype is not None else {}
        return PerTaskAdapterModel.build(r.model_source, heads, config, init_seed=r.seed, **kwargs)

    def finish(self, model: nn.Module, best: Path) -> dict[str, Any]:
        """No single-task export (the base is not saved); the artefact's sizes instead."""
        summary: dict[str, Any] = {"mixing_rates": self.rates}
        if isinstance(model, PerTaskAdapterModel) and (best / "multitask.json").is_file():
            summary["per_task_adapters"] = model.artefact_sizes(best)
        return summary


def _pooling(task: Any, checkpoint: str | None) -> str | None:
    """``tasks[].pooling``, else the rule of ``head.pooling: auto`` for a frozen pooler: the
    checkpoint's own pooling (MiniLM: mean, from its sentence-transformers config), else the
    first token."""
    if task.pooling is not None or task_kind(task.head).per_token:
        return task.pooling
    return checkpoint or "cls"
