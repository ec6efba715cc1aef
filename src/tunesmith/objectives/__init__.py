"""Objectives: the task loss plus registered extra terms (see :mod:`tunesmith.objectives.base`)."""

from tunesmith.objectives import continual, distill, l2sp  # noqa: F401  (register their terms)
from tunesmith.objectives.base import OBJECTIVES, ObjectiveTerm, build_terms, combine, register
from tunesmith.objectives.task import TASK_LOSSES, model_inputs, task_loss

__all__ = [
    "OBJECTIVES",
    "ObjectiveTerm",
    "TASK_LOSSES",
    "build_terms",
    "combine",
    "model_inputs",
    "register",
    "task_loss",
]
