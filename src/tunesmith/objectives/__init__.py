"""Objectives: registered extra terms added to the task loss (see :mod:`tunesmith.objectives.base`;
the task losses themselves belong to the task kinds, :mod:`tunesmith.tasks`)."""

from tunesmith.objectives import continual, distill, l2sp, uld  # noqa: F401  (register terms)
from tunesmith.objectives.base import OBJECTIVES, ObjectiveTerm, build_terms, combine, register

__all__ = [
    "OBJECTIVES",
    "ObjectiveTerm",
    "build_terms",
    "combine",
    "register",
]
