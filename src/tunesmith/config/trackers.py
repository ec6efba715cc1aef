"""``train.report_to``: the experiment trackers a run logs to, checked when the recipe loads.

The names are accelerate's trackers (``log_with``); each needs its package. A named tracker whose
package is missing is a one-line :class:`ConfigError` naming the pip extra, before any model
loads. ``metrics.jsonl`` is always written, whatever is listed.
"""

from __future__ import annotations

import importlib.util

from tunesmith.errors import ConfigError

__all__ = ["TRACKERS", "check_trackers"]

TRACKERS = {  # report_to name -> the module it imports
    "tensorboard": "tensorboard",
    "wandb": "wandb",
    "mlflow": "mlflow",
    "comet_ml": "comet_ml",
    "aim": "aim",
    "clearml": "clearml",
    "dvclive": "dvclive",
    "swanlab": "swanlab",
    "trackio": "trackio",
}
EXTRAS = {"wandb": "trackers", "mlflow": "trackers", "tensorboard": "tensorboard"}  # pyproject


def check_trackers(names: list[str], key: str) -> None:
    """Every name is a known tracker whose package is installed, listed once."""
    for name in names:
        if name not in TRACKERS:
            raise ConfigError(
                key, f"unknown tracker {name!r}", f"choose from {', '.join(TRACKERS)}"
            )
        if importlib.util.find_spec(TRACKERS[name]) is None:
            extra = EXTRAS.get(name)
            how = f"pip install 'tunesmith[{extra}]'" if extra else f"pip install {name}"
            raise ConfigError(key, f"{name} is not installed", how)
    if len(set(names)) != len(names):
        raise ConfigError(key, f"a tracker is listed twice: {names}")
