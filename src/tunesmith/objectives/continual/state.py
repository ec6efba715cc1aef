"""What a continual stage inherits from the stages before it, in one safetensors file.

A :class:`ContinualState` is built once between two stages (never per step; each continual
method fills its part, :meth:`~tunesmith.objectives.continual.base.ContinualMethod.update_state`)
and handed to the continual objective terms of the next stage, either in memory
(``term.bind_state(state)``) or, as :func:`tunesmith.continual.run_sequence` does, as a file
named in the term's params
(``objectives: [{name: ewc, params: {state: <dir>/state/stage-1.safetensors}}]``) which the term
reads in ``setup``. A file handoff keeps the training loop unaware of continual learning and
makes a half-done stage resumable: the same file is read again.

File layout: tensors under ``anchor/<task>/<param>``, ``fisher/<task>/<param>``,
``online_fisher/<param>`` and ``head/<task>/<param>``; everything else as JSON in the
safetensors metadata (key ``tunesmith_continual``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save

from tunesmith.atomic import atomic_write_bytes
from tunesmith.errors import ConfigError

__all__ = ["ContinualState", "check_task_name"]

_META_KEY = "tunesmith_continual"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def check_task_name(name: str, key: str = "stages") -> str:
    """Task names become file and tensor-key parts: letters, digits, ``_ . -`` only."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(
            key, f"invalid task name {name!r}", "use letters, digits, '_', '.' or '-' (no '/')"
        )
    return name


@dataclass
class ContinualState:
    """Per-stage state of a task sequence: what the terms of stage ``stage`` penalise against.

    Tensors are keyed by parameter name (``model.named_parameters()``) and live on the CPU.
    """

    task: str = "sequence_classification"  # recipe task type (selects the LwF divergence)
    heads: str = "separate"  # "separate": one label projection per task; "shared": one head
    stage: int = 0  # index of the stage this state is handed to
    seen: list[str] = field(default_factory=list)  # tasks trained before this stage, in order
    anchors: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)  # task -> theta*
    fishers: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)  # task -> diag F
    online_fisher: dict[str, torch.Tensor] = field(default_factory=dict)  # running F* (online)
    head_weights: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)  # task -> head
    old_label_ids: list[int] | None = None  # shared head: ids of the labels of the seen tasks
    previous_model: str | None = None  # folder of the previous stage's best model (LwF)
    replay_file: str | None = None  # JSONL of encoded replay examples (separate-head replay)

    def latest_anchor(self) -> dict[str, torch.Tensor]:
        """The weights after the most recent stage (online EWC, L2 anchor)."""
        if not self.seen or self.seen[-1] not in self.anchors:
            return {}
        return self.anchors[self.seen[-1]]

    def tensors(self) -> dict[str, torch.Tensor]:
        flat: dict[str, torch.Tensor] = {}
        for group, table in (
            ("anchor", self.anchors),
            ("fisher", self.fishers),
            ("head", self.head_weights),
        ):
            for task, params in table.items():
                for name, t in params.items():
                    flat[f"{group}/{task}/{name}"] = t
        for name, t in self.online_fisher.items():
            flat[f"online_fisher/{name}"] = t
        return {k: v.detach().cpu().contiguous().clone() for k, v in flat.items()}

    def meta(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "heads": self.heads,
            "stage": self.stage,
            "seen": list(self.seen),
            "old_label_ids": self.old_label_ids,
            "previous_model": self.previous_model,
            "replay_file": self.replay_file,
        }

    def save(self, path: str | Path) -> Path:
        """Write atomically (a temporary file renamed into place)."""
        path = Path(path)
        atomic_write_bytes(
            path, save(self.tensors(), metadata={_META_KEY: json.dumps(self.meta())})
        )
        return path

    @classmethod
    def load(cls, path: str | Path) -> ContinualState:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(
                "params.state",
                f"continual state file not found: {path}",
                "run the sequence with `tunesmith continual`, or save a ContinualState there",
            )
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get(_META_KEY, "{}"))
        state = cls(**meta)
        for key, t in load_file(str(path)).items():
            group, rest = key.split("/", 1)
            if group == "online_fisher":
                state.online_fisher[rest] = t
                continue
            task, name = rest.split("/", 1)
            table = {"anchor": state.anchors, "fisher": state.fishers, "head": state.head_weights}
            table[group].setdefault(task, {})[name] = t
        return state
