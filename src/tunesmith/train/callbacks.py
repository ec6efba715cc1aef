"""Callbacks: user code called by the loop at fixed points, on the main process only.

A callback is any object with some of these methods (all optional; :class:`Callback` has them
all as no-ops, to subclass)::

    on_train_begin(info)            # info: run_dir, total_steps, start_step, task, model
    on_step(step, metrics)          # after every optimiser step: loss (+ terms), grad_norm, lr
    on_evaluate(step, split, metrics)  # split: "dev" during training, "final_dev"/"final_test"
    on_save(step, path)             # a checkpoint folder or best/ was written
    on_stage_end(stage, report)     # continual sequences: a stage is trained and scored
    on_train_end(summary)           # the summary train() returns

A callback stops training by returning ``True`` from any of the methods called during training
(``on_step``, ``on_evaluate``, ``on_save``) or by setting ``control.should_stop = True`` on the
:class:`Control` it is given as its ``control`` attribute. The run stops at the end of that step
(asked from the ``on_save`` of a step's checkpoint: of the next step), saves a checkpoint there
and ends cleanly; ``train(..., resume=True)`` continues it (the returned summary has
``"stopped": True``, and no ``summary.json`` is written). With several processes the main one's
answer is shared, so that all stop at the same step.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:  # the run holds its CallbackList: no import at run time
    from tunesmith.train.setup import Run

__all__ = [
    "Callback",
    "CallbackList",
    "Control",
    "callback_stop",
    "stopped_summary",
    "train_info",
]

HOOKS = (
    "on_train_begin",
    "on_step",
    "on_evaluate",
    "on_save",
    "on_stage_end",
    "on_train_end",
)


@dataclass
class Control:
    """What callbacks can ask of the loop. Shared by every callback of one run."""

    should_stop: bool = False


class Callback:
    """Base class with every hook as a no-op; override the ones you need. ``self.control`` is
    set before ``on_train_begin``."""

    control: Control

    def on_train_begin(self, info: dict[str, Any]) -> bool | None:
        return None

    def on_step(self, step: int, metrics: dict[str, float]) -> bool | None:
        return None

    def on_evaluate(self, step: int, split: str, metrics: dict[str, float]) -> bool | None:
        return None

    def on_save(self, step: int, path: Path) -> bool | None:
        return None

    def on_stage_end(self, stage: str, report: dict[str, Any]) -> bool | None:
        return None

    def on_train_end(self, summary: dict[str, Any]) -> bool | None:
        return None


class CallbackList:
    """The run's callbacks and their shared :class:`Control`; calls each hook in order.

    ``enabled=False`` (processes other than the main one) makes every call a no-op."""

    def __init__(self, callbacks: Iterable[Any] = (), enabled: bool = True):
        self.callbacks = list(callbacks)
        self.control = Control()
        self.enabled = enabled
        for cb in self.callbacks:
            unknown = [n for n in dir(cb) if n.startswith("on_") and n not in HOOKS]
            if unknown:  # a misspelt hook would never be called: say so at once
                raise TypeError(
                    f"callback {type(cb).__name__} has unknown hook(s) {unknown}; "
                    f"hooks are {', '.join(HOOKS)}"
                )
            try:
                cb.control = self.control
            except AttributeError:  # a slotted or frozen object: it can still return True
                pass

    @property
    def should_stop(self) -> bool:
        return self.control.should_stop

    def call(self, hook: str, *args: Any) -> bool:
        """Call ``hook`` on every callback that has it; True when one asked to stop."""
        if not self.enabled:
            return False
        for cb in self.callbacks:
            method = getattr(cb, hook, None)
            if method is not None and method(*args) is True:
                self.control.should_stop = True
        return self.control.should_stop

    def __bool__(self) -> bool:
        return bool(self.callbacks) and self.enabled


def callback_stop(run: Run) -> bool:
    """Whether a callback asked to stop. Callbacks run on the main process only: with several
    processes its answer is shared, so that every process stops at the same step."""
    cbs, acc = run.callbacks, run.accelerator
    if not cbs.callbacks or acc.num_processes == 1:
        return cbs.should_stop
    flag = torch.tensor([float(cbs.should_stop)], device=acc.device)
    cbs.control.should_stop = bool(acc.reduce(flag, reduction="sum").item() > 0)
    return cbs.control.should_stop


def stopped_summary(run: Run) -> dict[str, Any]:
    """What a run stopped by a callback returns: no final evaluation and no ``summary.json``
    (the run is not over: ``resume=True`` continues it from the checkpoint just saved)."""
    state = run.state
    run.accelerator.print(
        f"stopped by a callback at step {state.step}; checkpoint saved in "
        f"{run.run_dir / 'checkpoints'} (resume to continue)"
    )
    return {
        "stopped": True,
        "task": run.recipe.task,
        "model": run.recipe.model_source,
        "steps": state.step,
        "total_steps": run.total_steps,
        "best_step": state.best_step,
        "metric": run.metric,
        "best_metric": state.best_metric,
        "run_dir": str(run.run_dir),
    }


def train_info(run: Run) -> dict[str, Any]:
    """What ``on_train_begin`` receives."""
    return {
        "run_dir": run.run_dir,
        "task": run.recipe.task,
        "model": run.recipe.model_source,
        "total_steps": run.total_steps,
        "start_step": run.state.step,
        "train_examples": len(run.mode.train_examples),
        "metric": run.metric,
    }
