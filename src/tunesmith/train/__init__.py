"""The training loop, checkpoints and run logging.

``tunesmith.train`` is this package. Calling it, ``tunesmith.train(recipe, run_dir)``, is the
older spelling of :func:`tunesmith.run` and still works (with a ``DeprecationWarning``), whichever
of the two was imported first.
"""

import sys
import types
import warnings
from typing import Any


class _CallablePackage(types.ModuleType):
    def __call__(self, recipe: Any, run_dir: Any = None, resume: bool = False, **kw: Any) -> dict:
        warnings.warn(
            "tunesmith.train(recipe, ...) is now tunesmith.run(recipe, ...) or "
            "tunesmith.Tuner(recipe).train(); tunesmith.train is the training subpackage",
            DeprecationWarning,
            stacklevel=2,
        )
        from tunesmith.train.loop import train

        return train(recipe, run_dir, resume=resume, **kw)


sys.modules[__name__].__class__ = _CallablePackage
