"""Text-to-text multi-task runs (T5 §2.4): several classification tasks written as text for one
generative model (``task: causal_lm | seq2seq`` with ``tasks:``), batches drawn by the mixing
rates, each task evaluated by scoring its label words."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn
from transformers import PreTrainedTokenizerBase

from tunesmith.config import Recipe
from tunesmith.data.pipeline import TaskDatasets
from tunesmith.train.evaluation import MEAN_KEY, flatten_task_metrics
from tunesmith.train.modes.base import load_hf_model
from tunesmith.train.modes.mixture import TaskMixture
from tunesmith.train.scoring import evaluate_text_to_text


@dataclass
class TextToText(TaskMixture):
    """One generative model for every task: the task is already in the text, so every batch goes
    through the same model with the recipe's generative loss."""

    @property
    def default_metric(self) -> str:
        return MEAN_KEY

    def route(self, example: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return self.recipe.task, {}

    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        """Every task by scoring its label words; ``mean`` as for a multi-head run."""
        return evaluate_text_tasks(model, self.tokenizer, self.recipe, self.data, split)

    def build_model(self) -> nn.Module:
        return load_hf_model(self.recipe, self.tokenizer, None)


def evaluate_text_tasks(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    recipe: Recipe,
    data: TaskDatasets,
    split: str,
) -> dict[str, float]:
    """Each task's accuracy / macro-F1 on ``split`` by scoring its label words
    (:func:`~tunesmith.train.scoring.evaluate_text_to_text`), flattened with their macro ``mean``."""
    per_task = {}
    for t in recipe.tasks:
        ds = data.tasks[t.name]
        if split not in ds.text_eval:
            continue
        prompts, gold = ds.text_eval[split]
        per_task[t.name] = evaluate_text_to_text(
            model,
            tokenizer,
            prompts,
            gold,
            ds.label_words,
            template=t.data.template,
            system=t.data.system,
            batch_size=recipe.train.eval_batch_size,
            max_length=t.data.max_length,
        )
    return flatten_task_metrics(per_task, {name: "accuracy" for name in per_task})
