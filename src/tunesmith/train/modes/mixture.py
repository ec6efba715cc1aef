"""Multi-task runs (``task: multi_head``): a shared encoder with one head per task, homogeneous
batches drawn by the mixing rates (T5 §3.5.2), per-task metrics and their macro ``mean``."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from accelerate import Accelerator
from torch import nn
from transformers import PreTrainedTokenizerBase

from tunesmith.config import Recipe
from tunesmith.data.mixing import (
    MixtureSampler,
    describe_rates,
    mixing_rates,
    mixture_steps_per_epoch,
)
from tunesmith.data.pipeline import TaskDatasets, build_task_datasets
from tunesmith.errors import ConfigError, ModelError
from tunesmith.heads import HeadSpec, MultiHeadModel, export_task
from tunesmith.train.evaluation import (
    Collate,
    TaskEval,
    default_metric,
    evaluate_tasks,
    flatten_task_metrics,
    primary_metric,
)
from tunesmith.train.modes.base import Labels, Plan, RunMode

logger = logging.getLogger(__name__)


@dataclass
class TaskMixture(RunMode):
    """What every multi-task mode shares: per-task data, the mixing rates and the sampler."""

    recipe: Recipe
    tokenizer: PreTrainedTokenizerBase
    accelerator: Accelerator
    data: TaskDatasets
    sampler: MixtureSampler
    rates: dict[str, float]
    steps_per_epoch: int

    @classmethod
    def build(
        cls,
        recipe: Recipe,
        tokenizer: PreTrainedTokenizerBase,
        accelerator: Accelerator,
        datasets: Any = None,
    ) -> TaskMixture:
        """Read every task's data, set the mixing rates and print them."""
        if datasets is not None:
            raise ConfigError(
                "datasets", "dataset objects replace the data of a single-task recipe only"
            )
        tr, m = recipe.train, recipe.mixing
        data = build_task_datasets(recipe, tokenizer)
        sizes = {name: len(ds.train) for name, ds in data.tasks.items()}
        weights = {t.name: t.weight for t in recipe.tasks} if m.strategy == "explicit" else None
        rates = mixing_rates(
            sizes, m.strategy, cap=m.cap, temperature=m.temperature, weights=weights
        )
        world, accum = accelerator.num_processes, recipe.optim.grad_accum
        per_epoch = mixture_steps_per_epoch(
            sizes, tr.batch_size, cap=m.cap, world=world, grad_accum=accum
        )
        sampler = MixtureSampler(
            sizes, rates, tr.batch_size, seed=recipe.seed, world=world, grad_accum=accum
        )
        accelerator.print(
            describe_rates(sizes, rates, strategy=m.strategy, cap=m.cap, temperature=m.temperature)
        )
        return cls(recipe, tokenizer, accelerator, data, sampler, rates, per_epoch)

    @property
    def train_examples(self) -> list[dict[str, Any]]:
        return self.data.train

    def plan(self, epoch: int) -> Plan:
        start = epoch * self.steps_per_epoch
        rank = self.accelerator.process_index
        return self.sampler.index_plan(start, self.steps_per_epoch, self.data.offsets, rank=rank)

    def has(self, split: str) -> bool:
        return any(getattr(ds, split) for ds in self.data.tasks.values())

    def labels(self) -> Labels:
        return {name: ds.vocab.labels for name, ds in self.data.tasks.items()}

    def finish(self, model: nn.Module, best: Path) -> dict[str, Any]:
        return {"mixing_rates": self.rates}


@dataclass
class Mixture(TaskMixture):
    """Several tasks on a shared encoder with one head per task; a batch goes to its task's head."""

    @property
    def default_metric(self) -> str:
        return default_metric("multi_head")

    def route(self, example: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        name = example["task"]
        kind = next(t.head for t in self.recipe.tasks if t.name == name)
        return kind, {"task": name}

    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        """Every task through its head; ``mean`` is the macro average of their primary metrics."""
        bs = self.recipe.train.eval_batch_size
        return evaluate_heads(
            model, self.recipe, self.data, self.eval_collator(), self.accelerator, bs, split
        )

    def build_model(self) -> nn.Module:
        r = self.recipe
        labels = self.labels()
        heads = {t.name: HeadSpec(t.head, labels[t.name], t.pooling) for t in r.tasks}
        return MultiHeadModel.from_backbone(
            r.model_source, heads, init_seed=r.seed, from_scratch=r.from_scratch
        )

    def finish(self, model: nn.Module, best: Path) -> dict[str, Any]:
        """Each task as a plain single-task HF model in ``best/tasks/<name>`` (for per-task
        fine-tuning after multi-task training, T5's best setting), where the head allows it."""
        if self.accelerator.is_main_process:
            for name in self.data.tasks:
                try:
                    export_task(model, name, best / "tasks" / name, self.tokenizer)
                except ModelError as exc:
                    logger.warning("task %s not exported as a single-task model: %s", name, exc)
        return super().finish(model, best)


def task_evals(recipe: Recipe, data: TaskDatasets, split: str) -> dict[str, TaskEval]:
    """Each task's ``split`` examples (tasks without that split are left out)."""
    return {
        t.name: TaskEval(
            getattr(data.tasks[t.name], split), t.head, data.tasks[t.name].vocab, t.metric
        )
        for t in recipe.tasks
        if getattr(data.tasks[t.name], split)
    }


def evaluate_heads(
    model: nn.Module,
    recipe: Recipe,
    data: TaskDatasets,
    collator: Collate,
    accelerator: Accelerator,
    batch_size: int,
    split: str,
) -> dict[str, float]:
    """``{"<task>/<metric>": ..., "mean": ...}`` of a multi-head model on ``split``."""
    evals = task_evals(recipe, data, split)
    per_task = evaluate_tasks(model, evals, collator, accelerator, batch_size)
    return flatten_task_metrics(
        per_task, {n: primary_metric(e.kind, e.metric) for n, e in evals.items()}
    )
