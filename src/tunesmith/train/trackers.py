"""Experiment trackers (``train.report_to``) through accelerate's tracker classes.

``metrics.jsonl`` stays the source of truth; trackers are live views that receive the same
records as ``split/metric`` scalars (``train/loss``, ``dev/accuracy``, ``final_test/f1``) and the
resolved recipe as the run's configuration. TensorBoard keeps tunesmith's own writer
(:mod:`tunesmith.train.logging`); ``report_to: [tensorboard]`` turns it on.

Where they write, when nothing else is set: wandb into ``run_dir`` (``WANDB_MODE=offline`` works
without an account), project ``$WANDB_PROJECT`` or ``tunesmith``; MLflow into the file store
``run_dir/mlruns`` (``MLFLOW_ALLOW_FILE_STORE=true`` is set for it) unless
``$MLFLOW_TRACKING_URI`` is set, experiment ``$MLFLOW_EXPERIMENT_NAME``
or ``tunesmith``. The others use their own settings (environment variables, config files).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tunesmith.config import Recipe
from tunesmith.configschema import to_dict
from tunesmith.errors import TunesmithError

__all__ = ["flat_config", "open_trackers"]


def flat_config(recipe: Recipe) -> dict[str, Any]:
    """The recipe as ``{"optim.lr": 1e-3, ...}`` with scalar values (trackers store params flat)."""
    out: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif value is None or isinstance(value, bool | int | float | str):
            out[prefix] = value
        else:
            out[prefix] = str(value)

    walk("", to_dict(recipe))
    return out


def _make(name: str, run_dir: Path) -> Any:
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS

    cls = LOGGER_TYPE_TO_CLASS[name]
    if name == "wandb":
        project = os.environ.get("WANDB_PROJECT", "tunesmith")
        return cls(project, dir=str(run_dir), name=run_dir.name)
    if name == "mlflow":
        if "MLFLOW_TRACKING_URI" not in os.environ:  # a file store in the run folder
            import mlflow

            # MLflow >= 3.7 wants the opt-in for file stores (the other stores need a server
            # or SQLAlchemy)
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            mlflow.set_tracking_uri((run_dir / "mlruns").resolve().as_uri())
        return cls(experiment_name="tunesmith", run_name=run_dir.name)
    if cls.requires_logging_directory:
        return cls(run_dir.name, str(run_dir / name))
    return cls(run_dir.name)


def open_trackers(recipe: Recipe, run_dir: Path) -> list[Any]:
    """Start the recipe's trackers (main process) with the recipe as their configuration."""
    trackers = []
    config = flat_config(recipe)
    for name in recipe.train.report_to:
        if name == "tensorboard":
            continue  # tunesmith's own writer (MetricsLogger)
        try:
            tracker = _make(name, Path(run_dir))
            tracker.start()
            tracker.store_init_configuration(config)
        except Exception as exc:  # the tracker's own error, e.g. no login: one line
            for t in trackers:
                t.finish()
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise TunesmithError(
                f"train.report_to: {name} could not start: {first} (hint: check its login or "
                "settings, or run it offline, e.g. WANDB_MODE=offline)"
            ) from exc
        trackers.append(tracker)
    return trackers
