"""Run modes: single-task, multi-head mixture and text-to-text behind one interface
(:class:`~tunesmith.train.modes.base.RunMode`), chosen from the recipe by :func:`build_mode`."""

from __future__ import annotations

from typing import Any

from accelerate import Accelerator
from transformers import PreTrainedTokenizerBase

from tunesmith.config import Recipe
from tunesmith.errors import ConfigError
from tunesmith.train.modes.base import Labels, Plan, RunMode
from tunesmith.train.modes.mixture import Mixture, TaskMixture
from tunesmith.train.modes.pertask import PerTaskAdapters
from tunesmith.train.modes.single import SingleTask
from tunesmith.train.modes.text_to_text import TextToText

__all__ = [
    "Labels",
    "Mixture",
    "PerTaskAdapters",
    "Plan",
    "RunMode",
    "SingleTask",
    "TaskMixture",
    "TextToText",
    "build_mode",
]


def build_mode(
    recipe: Recipe,
    tokenizer: PreTrainedTokenizerBase,
    accelerator: Accelerator,
    datasets: Any = None,
) -> RunMode:
    """The recipe's mode with its data read and encoded: text-to-text when generative tasks are
    listed under ``tasks:``, a multi-head mixture for ``task: multi_head``, else single-task.

    ``datasets`` (single-task recipes): the data passed in from Python instead of the recipe's
    sources, a mapping ``{"train" | "dev" | "test": datasets.Dataset | list[dict]}`` or a
    ``DatasetDict`` (its ``validation`` split is dev); splits it lacks come from the recipe."""
    if datasets is not None and recipe.tasks:
        raise ConfigError(
            "datasets", "passing datasets in is for single-task recipes (no tasks: list) yet"
        )
    if recipe.text_to_text:
        return TextToText.build(recipe, tokenizer, accelerator, datasets=datasets)
    if recipe.per_task_adapters:  # one adapter + head per task on a frozen base
        return PerTaskAdapters.build(recipe, tokenizer, accelerator, datasets=datasets)
    if recipe.tasks:
        return Mixture.build(recipe, tokenizer, accelerator, datasets=datasets)
    return SingleTask.build(recipe, tokenizer, accelerator, datasets=datasets)
