"""One adapter and one head per task on one frozen base: a multi-task model that is a few
megabytes per task (``task: multi_head`` with ``adapter: {..., per_task: true}``).

:class:`PerTaskAdapterModel` is a :class:`~tunesmith.heads.MultiHeadModel` whose backbone carries
one adapter per task, named after the task. ``forward(..., task=T)`` runs task ``T``'s adapter
and head, so the mixture mode, evaluation and ``predict --task`` route exactly as for per-task
heads; :meth:`~PerTaskAdapterModel.forward_mixed` takes a batch that mixes tasks and routes each
example through its own task's adapter and head (one backbone pass per task present).

Saved layout (``save_pretrained``; a run's ``best/``)::

    multitask.json            format "tunesmith.multihead-adapters": the base reference (name,
                              architecture, config), heads (kind, labels, pooling), adapter config
    heads.safetensors         heads.<task>.* (every task's head)
    adapters/<task>/          save_adapter of the backbone's adapter <task>: adapter_model.safetensors,
                              tunesmith_adapter.json (base identity + weights digest) and, for
                              methods with a PEFT format (LoRA, IA3), PEFT's adapter_config.json

No base weights are written: :meth:`~PerTaskAdapterModel.from_pretrained` loads the base it names
and every adapter refuses a base whose weights differ from the one it was trained on.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from tunesmith.adapters.io import (
    adapter_size_bytes,
    load_adapter,
    load_adapter_weights,
    save_adapter,
)
from tunesmith.adapters.methods import adapter_config_from_dict
from tunesmith.adapters.model import (
    adapter_parameters,
    add_adapter,
    frozen_parameters,
    set_active_adapter,
)
from tunesmith.configschema import to_dict
from tunesmith.errors import ModelError, reading
from tunesmith.heads import HeadSpec, MultiHeadModel
from tunesmith.heads.multihead import CONFIG_FILE, head_specs, read_meta

__all__ = ["FORMAT", "PerTaskAdapterModel", "load_multitask"]

FORMAT = "tunesmith.multihead-adapters"
HEADS_FILE = "heads.safetensors"
ADAPTERS_DIR = "adapters"


class PerTaskAdapterModel(MultiHeadModel):
    """A frozen backbone with one adapter (named after the task) and one head per task."""

    adapter_config: Any = None

    @classmethod
    def build(
        cls,
        name_or_path: str | os.PathLike[str],
        heads: Mapping[str, HeadSpec],
        config: Any,
        *,
        init_seed: int | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> PerTaskAdapterModel:
        """The base ``name_or_path`` with new heads and a new ``config`` adapter per task, only
        the adapters and heads trainable. Each adapter's init is seeded by (seed, task)."""
        model = cls.from_backbone(name_or_path, heads, init_seed=init_seed, dtype=dtype)
        model.add_task_adapters(config, init_seed)
        model.mark_trainable()
        return model

    def add_task_adapters(self, config: Any, init_seed: int | None = None) -> None:
        for task in self.tasks:
            with torch.random.fork_rng(devices=[]):
                if init_seed is not None:
                    torch.manual_seed((init_seed * 1_000_003 + zlib.crc32(task.encode())) % 2**63)
                add_adapter(self.backbone, task, config)
        self.adapter_config = config

    def mark_trainable(self) -> list[str]:
        """Every task's adapter and head trainable, the base frozen; returns the trainable names."""
        wanted = {f"heads.{n}" for n, _ in self.heads.named_parameters()}
        for task in self.tasks:
            names = set(adapter_parameters(self.backbone, task))
            wanted |= {f"backbone.{n}" for n in names - frozen_parameters(self.backbone, task)}
        for n, p in self.named_parameters():
            p.requires_grad_(n in wanted)
        return [n for n, p in self.named_parameters() if p.requires_grad]

    def forward(self, input_ids: torch.Tensor, *args: Any, task: str, **kwargs: Any) -> Any:
        """Task ``task``'s adapter and head: logits (B, C_task) or (B, T, C_task)."""
        self._spec(task)
        set_active_adapter(self.backbone, task)
        return super().forward(input_ids, *args, task=task, **kwargs)

    def forward_mixed(self, tasks: Sequence[str], **inputs: torch.Tensor) -> list[torch.Tensor]:
        """A batch whose examples belong to different tasks: example ``i`` goes through
        ``tasks[i]``'s adapter and head. Returns per-example logits, (C_task,) or (T_i, C_task)
        (right padding beyond a task group's longest example is cut, so each group is the batch
        that task alone would give)."""
        if len(tasks) != inputs["input_ids"].shape[0]:
            raise ModelError(f"{len(tasks)} task names for {inputs['input_ids'].shape[0]} examples")
        out: list[torch.Tensor | None] = [None] * len(tasks)
        for task in dict.fromkeys(tasks):
            rows = [i for i, t in enumerate(tasks) if t == task]
            index = torch.tensor(rows, device=inputs["input_ids"].device)
            group = {k: v.index_select(0, index) for k, v in inputs.items()}
            logits = self(**_trim(group), task=task).logits
            for j, i in enumerate(rows):
                out[i] = logits[j]
        return out  # type: ignore[return-value]

    # -- save / load ------------------------------------------------------------------------

    def save_pretrained(self, path: str | os.PathLike[str], safe_serialization: bool = True):
        """Write the layout of the module docstring into ``path`` (no base weights)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        heads = {
            f"heads.{k}": v.detach().cpu().contiguous() for k, v in self.heads.state_dict().items()
        }
        save_file(heads, str(path / HEADS_FILE), metadata={"format": "pt"})
        for task in self.tasks:
            save_adapter(self.backbone, path / ADAPTERS_DIR / task, task, include_head=False)
        meta = {
            **self.saved_meta(FORMAT),
            "adapter": to_dict(self.adapter_config),
            "adapters": {task: f"{ADAPTERS_DIR}/{task}" for task in self.tasks},
        }
        (path / CONFIG_FILE).write_text(json.dumps(meta, indent=2, default=str))

    def load_saved(self, path: str | os.PathLike[str]) -> None:
        """Put the adapters and heads saved in ``path`` back into this model, in place (a run
        reloading its ``best/``)."""
        path = Path(path)
        for task in self.tasks:
            load_adapter_weights(self.backbone, path / ADAPTERS_DIR / task, task)
        self._load_heads(path)

    def _load_heads(self, path: Path) -> None:
        with reading(path / HEADS_FILE, ModelError):
            tensors = load_file(str(path / HEADS_FILE))
        self.heads.load_state_dict({k.removeprefix("heads."): v for k, v in tensors.items()})

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike[str]) -> PerTaskAdapterModel:
        """Rebuild a model written by :meth:`save_pretrained`: the base it names (checked
        against every adapter's weights digest), the adapters and heads (eval mode)."""
        path = Path(path)
        meta = read_meta(path, FORMAT, "a multi-task model")
        heads = head_specs(meta)
        base = meta["backbone"]["name_or_path"]
        with torch.random.fork_rng(devices=[]):  # heads are overwritten below
            model = cls.from_backbone(base, heads, dropout=meta["dropout"])
        for task in model.tasks:
            load_adapter(model.backbone, path / meta["adapters"][task], task)
        model.adapter_config = adapter_config_from_dict(meta["adapter"], key=f"{path}: adapter")
        model._load_heads(path)
        model.mark_trainable()
        return model.eval()

    def artefact_sizes(self, path: str | os.PathLike[str]) -> dict[str, Any]:
        """Bytes on disk of a saved model: each task's adapter, the heads, and in all."""
        path = Path(path)
        adapters = {t: adapter_size_bytes(path / ADAPTERS_DIR / t) for t in self.tasks}
        heads = (path / HEADS_FILE).stat().st_size
        meta = (path / CONFIG_FILE).stat().st_size
        return {
            "adapter_bytes": adapters,
            "heads_bytes": heads,
            "artefact_bytes": sum(adapters.values()) + heads + meta,
        }


def _trim(group: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Cut columns that are padding in every row of a right-padded group."""
    mask = group.get("attention_mask")
    if mask is None:
        return group
    width = int(mask.sum(1).max())
    if width == mask.shape[1] or bool(mask[:, width:].any()):
        return group
    return {
        k: v[:, :width] if v.dim() >= 2 and v.shape[1] == mask.shape[1] else v
        for k, v in group.items()
    }


def load_multitask(path: str | os.PathLike[str]) -> nn.Module:
    """A saved multi-task model of either layout: per-task adapters on a referenced base
    (:class:`PerTaskAdapterModel`) or a full multi-head model (:class:`MultiHeadModel`)."""
    meta_file = Path(path) / CONFIG_FILE
    with reading(meta_file, ModelError):
        fmt = json.loads(meta_file.read_text(encoding="utf-8")).get("format")
    if fmt == FORMAT:
        return PerTaskAdapterModel.from_pretrained(path)
    return MultiHeadModel.from_pretrained(path)
