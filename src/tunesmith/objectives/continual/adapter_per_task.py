"""Adapter per task with task-id routing: the no-forgetting reference of parameter-efficient
continual learning (the PEFT counterpart of one model per task; e.g. Houlsby et al. 2019 §1).

Method ``adapter_per_task`` (``continual: {method: adapter_per_task}`` with an ``adapter:``):
every stage trains a fresh adapter (and head) on the initial model, and task j is scored with
its own stage's adapter and head: the task id picks them. Nothing a later stage trains touches
task j's parameters, so its scores after every later stage are those right after stage j, bit
for bit (BWT = 0 exactly); there is no transfer between tasks either. The storage is one adapter
(+ head) per task on one frozen base; ``stages/<j>-<task>/best/`` holds task j's.
"""

from __future__ import annotations

from tunesmith.objectives.continual.base import ContinualMethod, register_method

__all__ = ["AdapterPerTaskMethod"]


class AdapterPerTaskMethod(ContinualMethod):
    """A fresh adapter + head per task; each task scored with its own (task-id routing)."""

    name = "adapter_per_task"
    needs_adapter = True
    routed = True


register_method(
    AdapterPerTaskMethod,
    "a fresh adapter + head per task, routed by task id: no forgetting (Houlsby et al. 2019)",
)
