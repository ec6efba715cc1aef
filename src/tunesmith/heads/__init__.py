"""Per-task heads: several tasks with different label sets on one shared body (models layer).

Two ways to hold them, one initialisation (:func:`init_head_`, transformers' classifier init) and
one :class:`TaskView` for evaluating a single task:

* :class:`MultiHeadModel` (:mod:`.multihead`) -- a backbone with a head *module* per task, all
  trained together on a mixture (``task: multi_head``); :func:`export_task` (:mod:`.export`) turns
  one task into a plain transformers model.
* label-projection swapping (:mod:`.swap`) -- a transformers classification model whose label
  projection is saved per task and swapped in for a call; used by task sequences with separate
  heads (each stage stays an ordinary single-task run whose ``best/`` is a plain HF folder).
"""

from tunesmith.heads.export import export_task
from tunesmith.heads.multihead import (
    POOLINGS,
    HeadSpec,
    MultiHeadModel,
    TaskHead,
    config_from_dict,
    head_kinds,
)
from tunesmith.heads.swap import (
    fresh_head,
    head_state,
    init_head_,
    label_projection_names,
    logits_per_head,
)
from tunesmith.heads.view import TaskView

__all__ = [
    "POOLINGS",
    "HeadSpec",
    "MultiHeadModel",
    "TaskHead",
    "TaskView",
    "config_from_dict",
    "export_task",
    "fresh_head",
    "head_kinds",
    "head_state",
    "init_head_",
    "label_projection_names",
    "logits_per_head",
]
