"""The Python API: :class:`Tuner` (a recipe plus objects and callbacks) and :func:`run`.

A recipe can be a YAML path, a dict with the recipe's keys, or a :class:`~tunesmith.Recipe`;
``overrides`` are the CLI's ``key.sub=value`` strings. Objects passed in replace what the recipe
would load: ``model`` (a transformers ``PreTrainedModel`` with the task's head), ``tokenizer``,
``datasets`` (split -> ``datasets.Dataset`` or a list of records, or a ``DatasetDict``). A given
model is checked as a loaded one (head, label count, tokenizer size) and trained in place.

Example::

    tuner = Tuner("recipes/demo_bbc_news.yaml", overrides=["train.epochs=1"], output_dir="runs/x")
    summary = tuner.train()
    tuner.predict(["The central bank raised rates."])
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from tunesmith.config import Recipe, load_recipe, parse_recipe
from tunesmith.configschema import to_dict
from tunesmith.continual import TaskSequence, load_sequence, run_sequence
from tunesmith.errors import ConfigError
from tunesmith.predict import evaluate_run, predict_texts
from tunesmith.train.loop import train as train_loop

__all__ = ["Tuner", "as_recipe", "run"]

RecipeLike = str | Path | Mapping[str, Any] | Recipe


def run(
    recipe: RecipeLike,
    run_dir: str | Path | None = None,
    resume: bool = False,
    *,
    overrides: Sequence[str] | None = None,
    model: Any = None,
    tokenizer: Any = None,
    datasets: Any = None,
    callbacks: Iterable[Any] = (),
) -> dict[str, Any]:
    """Train ``recipe`` once; returns the summary (also in ``run_dir/summary.json``)."""
    return Tuner(
        recipe,
        overrides=overrides,
        output_dir=run_dir,
        model=model,
        tokenizer=tokenizer,
        datasets=datasets,
        callbacks=callbacks,
    ).train(resume=resume)


def _model_name(model: Any) -> str:
    """Where a given model came from, to stand as the recipe's ``model:`` when it has none."""
    name = getattr(model, "name_or_path", "") or ""
    if not name:
        raise ConfigError(
            "model",
            "the recipe names no model and the model object does not say where it came from",
            "set model: in the recipe (its tokenizer is loaded from there unless you pass one)",
        )
    return str(name)


def as_recipe(
    recipe: RecipeLike,
    overrides: Sequence[str] | None = None,
    output_dir: str | Path | None = None,
    model: Any = None,
) -> Recipe:
    """A validated :class:`Recipe` from a path, a dict or a Recipe, with ``overrides`` applied.
    A recipe without ``model:`` takes the given model's ``name_or_path``."""
    extra = list(overrides or [])
    if output_dir is not None:
        extra.append(f"output_dir={output_dir}")
    if isinstance(recipe, str | Path):
        loaded = load_recipe(recipe, extra, check_paths=True)
        if model is not None and loaded.model is None:
            loaded = dataclasses.replace(loaded, model=_model_name(model))
        return loaded
    if isinstance(recipe, Recipe):
        data = to_dict(recipe)
    elif isinstance(recipe, Mapping):
        data = dict(recipe)
    else:
        raise ConfigError(
            "recipe", f"expected a YAML path, a dict or a Recipe, got {type(recipe).__name__}"
        )
    if model is not None and data.get("model") is None:
        data["model"] = _model_name(model)
    return parse_recipe(data, extra)


def is_sequence(path: str | Path) -> bool:
    """A continual-learning recipe file has a top-level ``stages:`` list."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return False  # load_recipe reports it properly
    return isinstance(data, dict) and "stages" in data


class Tuner:
    """One run of a recipe, with objects and callbacks; ``train()``, then ``evaluate()`` and
    ``predict()`` on what it saved in ``output_dir`` (``best/``).

    ``callbacks``: objects with any of ``on_train_begin``, ``on_step``, ``on_evaluate``,
    ``on_save``, ``on_stage_end``, ``on_train_end`` (:mod:`tunesmith.train.callbacks`); one of
    them returning ``True`` (or setting ``self.control.should_stop``) stops training with a
    checkpoint saved: ``train(resume=True)`` continues it.
    """

    def __init__(
        self,
        recipe: RecipeLike,
        *,
        overrides: Sequence[str] | None = None,
        output_dir: str | Path | None = None,
        model: Any = None,
        tokenizer: Any = None,
        datasets: Any = None,
        callbacks: Iterable[Any] = (),
    ):
        self.sequence: TaskSequence | None = None
        if isinstance(recipe, str | Path) and is_sequence(recipe):  # continual: stages
            if model is not None or tokenizer is not None or datasets is not None:
                raise ConfigError("stages", "a task sequence takes no model/tokenizer/datasets")
            self.sequence = load_sequence(recipe, list(overrides or []))
            if output_dir is not None:
                self.sequence.output_dir = Path(output_dir)
        else:
            self.recipe = as_recipe(recipe, overrides, output_dir, model)
        self.model, self.tokenizer, self.datasets = model, tokenizer, datasets
        self.callbacks = list(callbacks)
        self.summary: dict[str, Any] | None = None

    @property
    def output_dir(self) -> Path:
        """The run folder: checkpoints, ``best/``, ``summary.json``, ``metrics.jsonl`` (a
        sequence's folder: one run per stage, ``matrix.json``)."""
        if self.sequence is not None:
            return Path(self.sequence.output_dir)
        return Path(self.recipe.output_dir)

    def train(self, resume: bool = False) -> dict[str, Any]:
        """Train (``resume=True``: continue the run in ``output_dir``); returns the summary.
        A task sequence runs its stages (finished ones are kept) and returns its report."""
        if self.sequence is not None:
            self.summary = run_sequence(self.sequence, callbacks=self.callbacks)
            return self.summary
        self.summary = train_loop(
            self.recipe,
            self.output_dir,
            resume=resume,
            model=self.model,
            tokenizer=self.tokenizer,
            datasets=self.datasets,
            callbacks=self.callbacks,
        )
        return self.summary

    def evaluate(self, split: str | Sequence[str] = ("dev", "test")) -> dict[str, Any]:
        """The saved best model's metrics on the recipe's ``split`` data: ``{metric: value}`` for
        one split name, ``{split: {metric: value}}`` for several."""
        splits = (split,) if isinstance(split, str) else tuple(split)
        result = evaluate_run(self.output_dir, splits)
        return result.get(split, {}) if isinstance(split, str) else result

    def predict(
        self,
        texts: str | Sequence[str],
        max_new_tokens: int | None = None,
        task: str | None = None,
    ) -> list[Any]:
        """Predictions of the saved best model (as ``tunesmith predict``): classification
        ``{"label", "score"}``, token classification ``[(word, tag)]``, generation
        ``{"generated"}``; ``task`` picks a multi-task run's head."""
        batch = [texts] if isinstance(texts, str) else list(texts)
        return predict_texts(self.output_dir, batch, max_new_tokens, task)
