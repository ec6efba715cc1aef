"""tunesmith: advanced fine-tuning of language models.

Transfer learning, adapters, distillation, continual and multi-task learning as one recipe
running through one training loop. Entry points: the ``tunesmith`` CLI, or::

    from tunesmith import load_recipe, train
    summary = train(load_recipe("recipes/demo_bbc_news.yaml"))
"""

# The built-in methods register themselves when their packages are imported; importing them here
# fills the registries (tunesmith.registry) whatever module a user imports first, so the config and
# data layers can look methods up by name without importing the layers above them.
import tunesmith.adapters  # noqa: F401  (adapter methods: registry.ADAPTERS)
import tunesmith.data  # noqa: F401  (data formats: registry.FORMATS)
import tunesmith.objectives  # noqa: F401  (objective terms and continual methods)
import tunesmith.tasks  # noqa: F401  (task kinds: registry.TASKS)
from tunesmith.config import Recipe, load_recipe, parse_recipe
from tunesmith.errors import ConfigError, DataError, ModelError, TrainingError, TunesmithError

__version__ = "0.1.0"


def train(recipe, run_dir=None, resume: bool = False) -> dict:
    """Train a :class:`Recipe`; see :func:`tunesmith.train.loop.train`."""
    # Imported here, not at the top: ``tunesmith.train`` also names the subpackage, and importing
    # it at the top would leave that attribute ambiguous for ``import tunesmith.train.x as y``.
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
