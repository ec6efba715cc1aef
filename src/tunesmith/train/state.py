"""Loop bookkeeping that must survive a kill: position in the data, best metric, counters."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class TrainState:
    step: int = 0  # optimiser steps done in total
    epoch: int = 0  # current epoch (0-based)
    step_in_epoch: int = 0  # optimiser steps done inside the current epoch (the data position)
    best_metric: float | None = None
    best_step: int | None = None
    bad_evals: int = 0  # evaluations since the last improvement (early stopping)
    tokens: int = 0  # non-pad training tokens seen
    wall_s: float = 0.0  # training time accumulated over all sessions of the run
    unfreezer: dict[str, Any] = field(default_factory=dict)
    finished: bool = False  # the run ended here (its checkpoint keeps no optimizer state)

    @classmethod
    def load(cls, path: Path) -> TrainState:
        """Read the state from a checkpoint's ``trainer_state.json`` (other keys: its manifest)."""
        data = json.loads(path.read_text())
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})

    def improved(self, value: float, greater_is_better: bool) -> bool:
        if self.best_metric is None:
            return True
        return value > self.best_metric if greater_is_better else value < self.best_metric
