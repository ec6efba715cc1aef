"""Continual learning: learn tasks one after another without forgetting the earlier ones.

A task sequence runs each task as one stage through the same training loop
(:func:`run_sequence`); methods are objective terms plus work between stages:

* metrics on the accuracy matrix R (:mod:`.metrics`): ACC, BWT, forgetting, FWT;
* the diagonal Fisher of the trainable parameters (:mod:`.fisher`) for EWC / online EWC;
* a per-stage :class:`ContinualState` (anchors, Fishers, old heads) that the terms of
  :mod:`tunesmith.objectives.continual` (``ewc``, ``online_ewc``, ``l2_anchor``, ``lwf``,
  ``replay``) read, bound in memory or from a file;
* a reservoir replay buffer (:mod:`.replay`);
* separate task heads swapped on one body (:mod:`.heads`).

Formulas and recipes: ``docs/continual.md``.
"""

from tunesmith.continual.config import (
    METHODS,
    ContinualConfig,
    FisherConfig,
    ReplayConfig,
    Stage,
    TaskSequence,
    load_sequence,
    parse_sequence,
)
from tunesmith.continual.fisher import diagonal_fisher, empirical, online_update, sampled
from tunesmith.continual.heads import TaskView, fresh_head, head_state, label_projection_names
from tunesmith.continual.metrics import (
    Forgetting,
    average_accuracy,
    backward_transfer,
    forgetting,
    forward_transfer,
    matrix_report,
)
from tunesmith.continual.penalty import merge_quadratics, quadratic_penalty
from tunesmith.continual.replay import ReservoirBuffer
from tunesmith.continual.state import ContinualState


def run_sequence(*args, **kwargs):
    """Run a task sequence; see :func:`tunesmith.continual.stages.run_sequence`.

    (Imported on first use: the runner needs the training loop, which imports the objectives,
    which import this package.)
    """
    from tunesmith.continual.stages import run_sequence as _run

    return _run(*args, **kwargs)


__all__ = [
    "METHODS",
    "ContinualConfig",
    "ContinualState",
    "FisherConfig",
    "Forgetting",
    "ReplayConfig",
    "ReservoirBuffer",
    "TaskSequence",
    "Stage",
    "TaskView",
    "average_accuracy",
    "backward_transfer",
    "diagonal_fisher",
    "empirical",
    "forgetting",
    "forward_transfer",
    "fresh_head",
    "head_state",
    "label_projection_names",
    "load_sequence",
    "matrix_report",
    "merge_quadratics",
    "online_update",
    "parse_sequence",
    "quadratic_penalty",
    "run_sequence",
    "sampled",
]
