"""Multi-task pieces of a run (``task: multi_head``): per-task data, the shared encoder with one
head per task, and the mixture sampler that decides which task each batch comes from."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tunesmith.config import Recipe
from tunesmith.data.pipeline import TaskDatasets, build_task_datasets
from tunesmith.multitask import (
    HeadSpec,
    MixtureSampler,
    MultiHeadModel,
    TaskEval,
    describe_rates,
    mixing_rates,
    mixture_steps_per_epoch,
)


@dataclass
class MultiTask:
    data: TaskDatasets
    model: MultiHeadModel
    sampler: MixtureSampler
    steps_per_epoch: int
    rates: dict[str, float]


def build_multitask(recipe: Recipe, tokenizer, accelerator, run_dir: Path) -> MultiTask:
    tr, m = recipe.train, recipe.mixing
    data = build_task_datasets(recipe, tokenizer)
    labels = {name: ds.vocab.labels for name, ds in data.tasks.items()}
    if accelerator.is_main_process:
        (run_dir / "labels.json").write_text(json.dumps(labels, indent=2))
    heads = {t.name: HeadSpec(t.head, labels[t.name], t.pooling) for t in recipe.tasks}
    model = MultiHeadModel.from_backbone(
        recipe.model_source, heads, init_seed=recipe.seed, from_scratch=recipe.from_scratch
    )
    sizes = {name: len(ds.train) for name, ds in data.tasks.items()}
    weights = {t.name: t.weight for t in recipe.tasks} if m.strategy == "explicit" else None
    rates = mixing_rates(sizes, m.strategy, cap=m.cap, temperature=m.temperature, weights=weights)
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
    return MultiTask(data, model, sampler, per_epoch, rates)


def task_evals(recipe: Recipe, data: TaskDatasets, split: str) -> dict[str, TaskEval]:
    """Each task's ``split`` examples (tasks without that split are left out)."""
    return {
        t.name: TaskEval(
            getattr(data.tasks[t.name], split), t.head, data.tasks[t.name].vocab, t.metric
        )
        for t in recipe.tasks
        if getattr(data.tasks[t.name], split)
    }
