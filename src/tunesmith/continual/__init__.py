"""Continual learning: learn tasks one after another without forgetting the earlier ones.

A task sequence runs each task as one stage through the same training loop
(:func:`run_sequence`); what a method adds (objective terms, work between stages) comes from
its module in :mod:`tunesmith.objectives.continual` (``naive``, ``ewc``, ``online_ewc``,
``l2_anchor``, ``lwf``, ``replay``, ``ewc_replay``, ``joint``; registry :data:`METHODS`).
This package is the driver around the loop:

* the sequence recipe and its ``continual:`` section (:mod:`.config`);
* each task's splits frozen once (:mod:`.data`);
* the runner and the work between stages (:mod:`.stages`, :mod:`.hooks`);
* metrics on the accuracy matrix R (:mod:`.metrics`): ACC, BWT, forgetting, FWT;
* causal-LM tasks scored by their label words (:mod:`.labelwords`) and a held-out perplexity
  probe measured after every stage (:mod:`.probe`);
* separate task heads swapped on one body (:mod:`.heads`).

The loss-side pieces (the diagonal Fisher, :class:`ContinualState`, the quadratic penalties, the
reservoir buffer) live in :mod:`tunesmith.objectives.continual` and are re-exported here.
Formulas and recipes: ``docs/continual.md``.
"""

from tunesmith.continual.config import (
    LEGACY_KEYS,
    ContinualConfig,
    Stage,
    TaskSequence,
    load_sequence,
    parse_sequence,
)
from tunesmith.continual.metrics import (
    Forgetting,
    average_accuracy,
    backward_transfer,
    forgetting,
    forward_transfer,
    matrix_report,
)
from tunesmith.continual.stages import run_sequence
from tunesmith.heads import TaskView, fresh_head, head_state, label_projection_names
from tunesmith.objectives.continual import (
    METHODS,
    PRESETS,
    ContinualState,
    FisherConfig,
    ReservoirBuffer,
    diagonal_fisher,
    empirical,
    merge_quadratics,
    normalize_fisher,
    online_update,
    quadratic_penalty,
    sampled,
)

__all__ = [
    "LEGACY_KEYS",
    "METHODS",
    "PRESETS",
    "ContinualConfig",
    "ContinualState",
    "FisherConfig",
    "Forgetting",
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
    "normalize_fisher",
    "online_update",
    "parse_sequence",
    "quadratic_penalty",
    "run_sequence",
    "sampled",
]
