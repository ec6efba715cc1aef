"""tunesmith: advanced fine-tuning of language models.

Transfer learning, adapters, distillation, continual and multi-task learning as one recipe
running through one training loop. Entry points: the ``tunesmith`` CLI, or::

    from tunesmith import load_recipe, train
    summary = train(load_recipe("recipes/demo_bbc_news.yaml"))
"""

import tunesmith.tasks  # noqa: F401  (fills the task table, tunesmith.registry.TASKS)
from tunesmith.config import Recipe, load_recipe, parse_recipe
from tunesmith.errors import ConfigError, DataError, ModelError, TrainingError, TunesmithError

__version__ = "0.1.0"


def train(recipe, run_dir=None, resume: bool = False) -> dict:
    """Train a :class:`Recipe`; see :func:`tunesmith.train.loop.train`."""
    from tunesmith.train.loop import train as _train

    return _train(recipe, run_dir, resume=resume)


__all__ = [
    "ConfigError",
    "DataError",
    "ModelError",
    "Recipe",
    "TrainingError",
    "TunesmithError",
    "load_recipe",
    "parse_recipe",
    "train",
]
