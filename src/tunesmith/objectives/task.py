"""Transitional re-export: task losses and model inputs live in :mod:`tunesmith.tasks`.

Only ``continual/fisher.py`` and ``objectives/continual.py`` still import from here (they are
being restructured elsewhere); once they import from :mod:`tunesmith.tasks`, delete this module.
"""

from tunesmith.tasks import IGNORE_INDEX, model_inputs, task_loss

__all__ = ["IGNORE_INDEX", "model_inputs", "task_loss"]
