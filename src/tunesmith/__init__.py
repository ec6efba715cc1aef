"""tunesmith: advanced fine-tuning of language models.

Transfer learning, adapters, distillation, continual and multi-task learning as one recipe
running through one training loop. Entry points: the ``tunesmith`` CLI, or in Python
(docs/python-api.md)::

    from tunesmith import Tuner
    tuner = Tuner("recipes/demo_bbc_news.yaml", overrides=["train.epochs=1"])
    summary = tuner.train()

``tunesmith.run(recipe, run_dir)`` trains once; ``tunesmith.train`` is the training subpackage
(calling it as ``tunesmith.train(recipe)`` still works, as the older name of ``run``).
"""

import importlib
from typing import Any

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

# Imported on first use (they pull in the loop, accelerate and the drivers).
_LAZY = {
    "Tuner": ("tunesmith.tuner", "Tuner"),
    "run": ("tunesmith.tuner", "run"),
    "Callback": ("tunesmith.train.callbacks", "Callback"),
    "train": ("tunesmith.train", None),  # the subpackage; callable as the older name of run
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'tunesmith' has no attribute {name!r}")
    module, attr = _LAZY[name]
    loaded = importlib.import_module(module)
    return loaded if attr is None else getattr(loaded, attr)


__all__ = [
    "Callback",
    "ConfigError",
    "DataError",
    "ModelError",
    "Recipe",
    "TrainingError",
    "Tuner",
    "TunesmithError",
    "load_recipe",
    "parse_recipe",
    "run",
    "train",
]
