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
    evaluate_text_to_text,
    flatten_task_metrics,
    mixing_rates,
    mixture_steps_per_epoch,
)


@dataclass
class MultiTask:
    data: TaskDatasets
    model: MultiHeadModel | None  # None for text-to-text: the run builds its generative model
    sampler: MixtureSampler
    steps_per_epoch: int
    rates: dict[str, float]


def build_multitask(recipe: Recipe, tokenizer, accelerator, run_dir: Path) -> MultiTask:
    tr, m = recipe.train, recipe.mixing
    data = build_task_datasets(recipe, tokenizer)
    labels = {name: ds.vocab.labels for name, ds in data.tasks.items()}
    if accelerator.is_main_process:
        (run_dir / "labels.json").write_text(json.dumps(labels, indent=2))
    model = None
    if not recipe.text_to_text:
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


def evaluate_text_tasks(model, tokenizer, recipe: Recipe, data: TaskDatasets, split: str):
    """Text-to-text: each task's accuracy / macro-F1 on ``split`` by scoring its label words
    (:func:`~tunesmith.multitask.evaluate_text_to_text`), flattened with their macro ``mean``."""
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
