"""The one training loop: every technique plugs in as data, model changes or objective terms.

Per optimiser step: forward each micro-batch, task loss + weighted extra terms, backward
(gradients accumulate), clip, AdamW step, schedule step. Evaluation on dev every N steps keeps
the best model; checkpoints make a killed run resumable with the same final weights.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from pathlib import Path

import torch
from safetensors.torch import load_model as load_safetensors_model
from torch.utils.data import BatchSampler
from tqdm.auto import tqdm

from tunesmith.adapters import delete_adapter, load_adapter
from tunesmith.config import Recipe
from tunesmith.data.collate import LengthGroupedSampler
from tunesmith.errors import ModelError, TrainingError
from tunesmith.multitask import evaluate_tasks, export_task, flatten_task_metrics, primary_metric
from tunesmith.objectives import combine
from tunesmith.optim import clip_gradients
from tunesmith.report import write_report
from tunesmith.tasks import model_inputs, task_loss
from tunesmith.train.checkpoint import checkpoint_dirs, load_checkpoint, save_best, save_checkpoint
from tunesmith.train.evaluation import evaluate
from tunesmith.train.multitask_setup import evaluate_text_tasks, task_evals
from tunesmith.train.setup import Run, setup_run

logger = logging.getLogger(__name__)


class Interrupted(Exception):
    """Raised by ``interrupt_at_step`` (tests simulate a killed run with it)."""


def epoch_plan(run: Run, epoch: int) -> list[list[list[int]]]:
    """This process's optimiser steps for ``epoch``: steps -> micro-batches -> example indices.

    Depends only on (seed, epoch), so a resumed run rebuilds the same plan and skips the steps
    already done instead of replaying the data loader.
    """
    tr, world = run.recipe.train, run.accelerator.num_processes
    if run.multi is not None:  # multi-task: homogeneous batches drawn by the mixing rates
        start = epoch * run.steps_per_epoch
        return run.multi.sampler.index_plan(
            start, run.steps_per_epoch, run.multi.data.offsets, rank=run.accelerator.process_index
        )
    lengths = [len(ex["input_ids"]) for ex in run.data.train]
    if tr.length_grouping:
        sampler = LengthGroupedSampler(lengths, tr.batch_size, seed=run.recipe.seed, epoch=epoch)
    else:
        g = torch.Generator().manual_seed(run.recipe.seed * 1000 + epoch)
        sampler = torch.randperm(len(lengths), generator=g).tolist()
    batches = list(BatchSampler(sampler, tr.batch_size, drop_last=False))
    if len(batches) < world:  # every process needs a batch, or DDP waits forever
        batches = (batches * world)[:world]
    usable = len(batches) - len(batches) % world
    mine = batches[:usable][run.accelerator.process_index :: world]
    k = run.recipe.optim.grad_accum
    return [mine[i : i + k] for i in range(0, len(mine), k)]


def forward_loss(run: Run, batch: dict, task_name: str | None = None):
    """Task loss + terms for one micro-batch; ``task_name`` picks a multi-task model's head."""
    if run.recipe.text_to_text:  # one generative model: the task is already in the text
        task_name = None
    task = run.raw_model.task_kind(task_name) if task_name else run.recipe.task
    head = {"task": task_name} if task_name else {}
    bf16 = run.recipe.train.precision == "bf16"
    with torch.autocast(run.accelerator.device.type, dtype=torch.bfloat16, enabled=bf16):
        extra = {k: v for term in run.terms for k, v in term.forward_kwargs().items()}
        outputs = run.model(**model_inputs(task, batch), **extra, **head)
        loss = task_loss(task, outputs.logits, batch["labels"])
        return combine(loss, run.terms, run.raw_model, batch, outputs, run.recipe.task_weight)


def optimizer_step(run: Run, micro_batches: list[list[int]]) -> dict[str, float]:
    """Accumulate gradients over the micro-batches, clip, step. Returns logging values."""
    acc, examples = run.accelerator, run.data.train
    parts_sum: dict[str, float] = {}
    tokens = 0
    for i, idx in enumerate(micro_batches):
        batch = {k: v.to(acc.device) for k, v in run.collator([examples[j] for j in idx]).items()}
        tokens += int(batch["attention_mask"].sum())
        last = i == len(micro_batches) - 1
        sync = contextlib.nullcontext() if last else acc.no_sync(run.model)
        with sync:
            loss, parts = forward_loss(run, batch, examples[idx[0]].get("task"))
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"non-finite loss ({float(loss.detach())}) at step {run.state.step + 1}; the last good "
                    f"checkpoint is kept in {run.run_dir / 'checkpoints'} (hint: lower optim.lr, "
                    "set optim.max_grad_norm, or use precision: fp32)"
                )
            acc.backward(loss / len(micro_batches))
        for key, value in parts.items():
            parts_sum[key] = parts_sum.get(key, 0.0) + value / len(micro_batches)
    trainable = [p for g in run.optimizer.param_groups for p in g["params"] if p.grad is not None]
    grad_norm = clip_gradients(trainable, run.recipe.optim.max_grad_norm)
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    return {**parts_sum, "grad_norm": float(grad_norm), "tokens": tokens}


def has_split(run: Run, split: str) -> bool:
    if run.multi is not None:
        return any(getattr(ds, split) for ds in run.multi.data.tasks.values())
    return bool(getattr(run.data, split))


def run_eval(run: Run, split: str = "dev") -> dict[str, float]:
    if run.recipe.text_to_text:  # every task by scoring its label words; "mean" as below
        return evaluate_text_tasks(run.raw_model, run.tokenizer, run.recipe, run.multi.data, split)
    if run.multi is not None:  # every task through its head; "mean" is their macro average
        evals = task_evals(run.recipe, run.multi.data, split)
        per_task = evaluate_tasks(
            run.raw_model, evals, run.collator, run.accelerator, run.recipe.train.eval_batch_size
        )
        return flatten_task_metrics(
            per_task, {n: primary_metric(e.kind, e.metric) for n, e in evals.items()}
        )
    examples = getattr(run.data, split)
    return evaluate(
        run.raw_model,  # not the DDP wrapper: evaluation is forward-only and sharded by hand
        examples,
        run.collator,
        run.recipe.task,
        run.data.vocab,
        run.accelerator,
        run.recipe.train.eval_batch_size,
    )


def task_labels(run: Run):
    """The label list ({task: labels} for a multi-task run; None for generative tasks)."""
    if run.multi is not None:
        return {name: ds.vocab.labels for name, ds in run.multi.data.tasks.items()}
    return run.data.vocab.labels if run.data.vocab else None


def best_meta(run: Run, metrics: dict) -> dict:
    return {
        "task": run.recipe.task,
        "base_model": run.recipe.model_source,
        "step": run.state.step,
        "metric": run.metric,
        "dev": metrics,
        "labels": task_labels(run),
    }


def evaluate_and_keep_best(run: Run) -> bool:
    """Evaluate on dev, save ``best/`` on improvement. Returns True when early stopping fires."""
    state, tr = run.state, run.recipe.train
    metrics = run_eval(run, "dev")
    if run.logger:
        run.logger.log(state.step, "dev", metrics, epoch=state.epoch)
    if run.metric not in metrics:
        raise TrainingError(
            f"train.metric {run.metric!r} is not computed for this task; "
            f"available: {sorted(metrics)}"
        )
    value = metrics[run.metric]
    if state.improved(value, run.greater_is_better):
        state.best_metric, state.best_step, state.bad_evals = value, state.step, 0
        if run.accelerator.is_main_process:
            save_best(
                run.raw_model, run.tokenizer, run.run_dir, best_meta(run, metrics), run.adapter
            )
    else:
        state.bad_evals += 1
    run.accelerator.wait_for_everyone()
    patience = tr.early_stopping_patience
    return patience is not None and state.bad_evals >= patience


def log_train(run: Run, window: list[dict], elapsed: float) -> dict:
    tokens = sum(w["tokens"] for w in window)
    keys = [k for k in window[0] if k != "tokens"]
    values = {k: sum(w[k] for w in window) / len(window) for k in keys}
    values["lr"] = run.scheduler.get_last_lr()[0] / run.optimizer.param_groups[0].get(
        "lr_scale", 1.0
    )
    values["tokens_per_s"] = tokens * run.accelerator.num_processes / max(elapsed, 1e-9)
    if run.logger:
        run.logger.log(run.state.step, "train", values, epoch=run.state.epoch)
    return values


def train_epoch(run: Run, bar, interrupt_at_step: int | None) -> bool:
    """Run the rest of the current epoch. Returns True when training should stop."""
    state, tr = run.state, run.recipe.train
    plan = epoch_plan(run, state.epoch)
    run.model.train()
    window, t0 = [], time.perf_counter()
    for micro_batches in plan[state.step_in_epoch :]:
        window.append(optimizer_step(run, micro_batches))
        state.step += 1
        state.step_in_epoch += 1
        state.tokens += window[-1]["tokens"]
        bar.update(1)
        if run.unfreezer and run.recipe.transfer.gradual_unfreeze.unit == "steps":
            run.unfreezer.advance()  # it counts the calls: one more group every `every`
        if state.step % tr.log_every == 0 or state.step == run.total_steps:
            elapsed = time.perf_counter() - t0
            state.wall_s += elapsed
            values = log_train(run, window, elapsed)
            bar.set_postfix(
                loss=f"{values['loss']:.4f}",
                lr=f"{values['lr']:.2e}",
                tok_s=f"{values['tokens_per_s']:.0f}",
            )
            window, t0 = [], time.perf_counter()
        stop = step_boundary(run, end_of_epoch=state.step_in_epoch == len(plan))
        if interrupt_at_step is not None and state.step == interrupt_at_step:
            raise Interrupted(state.step)
        if stop or state.step >= run.total_steps:
            state.wall_s += time.perf_counter() - t0
            return True
    state.wall_s += time.perf_counter() - t0
    return False


def step_boundary(run: Run, end_of_epoch: bool) -> bool:
    """Evaluate / checkpoint when due. Returns True on early stop."""
    state, tr = run.state, run.recipe.train
    last = state.step >= run.total_steps
    if end_of_epoch:
        state.epoch += 1
        state.step_in_epoch = 0
        if run.unfreezer and run.recipe.transfer.gradual_unfreeze.unit == "epochs":
            run.unfreezer.advance()
    due_eval = (state.step % tr.eval_every == 0) if tr.eval_every else end_of_epoch
    stop = False
    if has_split(run, "dev") and (due_eval or last):
        stop = evaluate_and_keep_best(run)
    due_save = (state.step % tr.save_every == 0) if tr.save_every else (due_eval or last)
    if due_save or stop:
        if run.unfreezer:
            state.unfreezer = run.unfreezer.state_dict()
        save_checkpoint(run.accelerator, run.run_dir, state, run.terms, tr.keep_checkpoints)
    return stop


def resume_from_checkpoint(run: Run) -> None:
    ckpts = checkpoint_dirs(run.run_dir)
    if not ckpts:
        run.accelerator.print(f"no checkpoint in {run.run_dir}; starting from step 0")
        return
    run.state = load_checkpoint(run.accelerator, ckpts[-1], run.terms)
    if run.unfreezer and run.state.unfreezer:
        run.unfreezer.load_state_dict(run.state.unfreezer)
    run.accelerator.print(f"resumed from {ckpts[-1]} (step {run.state.step})")


def reload_best(run: Run, best: Path) -> None:
    """Put the weights of ``best/`` back into the model (full weights, or the adapter + head)."""
    if run.adapter is None:
        load_safetensors_model(run.raw_model, str(best / "model.safetensors"), strict=False)
        return
    name = run.adapter[0]
    delete_adapter(run.raw_model, name)
    load_adapter(run.raw_model, best, name)


def export_tasks(run: Run, best: Path) -> None:
    """Each task as a plain single-task HF model in ``best/tasks/<name>`` (for per-task
    fine-tuning after multi-task training, T5's best setting), where the head allows it."""
    for name in run.multi.data.tasks:
        try:
            export_task(run.raw_model, name, best / "tasks" / name, run.tokenizer)
        except ModelError as exc:
            logger.warning("task %s not exported as a single-task model: %s", name, exc)


def finish(run: Run) -> dict:
    """Reload the best weights, evaluate dev and test, write summary.json and the report."""
    acc, state = run.accelerator, run.state
    best = run.run_dir / "best"
    if has_split(run, "dev") and (best / "tunesmith.json").is_file():
        reload_best(run, best)
    elif acc.is_main_process:  # no dev set: the final model is the result
        save_best(run.raw_model, run.tokenizer, run.run_dir, best_meta(run, {}), run.adapter)
    acc.wait_for_everyone()
    summary = {
        "task": run.recipe.task,
        "model": run.recipe.model_source,
        "steps": state.step,
        "epochs": round(state.step / run.steps_per_epoch, 3),
        "best_step": state.best_step,
        "metric": run.metric,
        "train_examples": len(run.data.train),
        "wall_s": round(state.wall_s, 1),
        "tokens_per_s": round(state.tokens * acc.num_processes / max(state.wall_s, 1e-9), 1),
        "trainable_params": run.trainable_params,
        "total_params": run.total_params,
    }
    if run.dev_at_start is not None:
        summary["dev_at_start"] = run.dev_at_start
    if run.multi is not None:
        summary["mixing_rates"] = run.multi.rates
        if acc.is_main_process and not run.recipe.text_to_text:
            export_tasks(run, best)
    for split in ("dev", "test"):
        if has_split(run, split):
            summary[split] = run_eval(run, split)
            if run.logger:
                run.logger.log(state.step, f"final_{split}", summary[split])
    if acc.is_main_process:
        (run.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        write_report(run.run_dir, title=f"tunesmith run: {run.run_dir.name}")
    return summary


def train(
    recipe: Recipe,
    run_dir: str | Path | None = None,
    resume: bool = False,
    interrupt_at_step: int | None = None,
) -> dict:
    """Train ``recipe``; returns the summary (also in ``run_dir/summary.json``)."""
    run = setup_run(recipe, Path(run_dir or recipe.output_dir), resume)
    if resume:
        resume_from_checkpoint(run)
    acc = run.accelerator
    if acc.is_main_process:
        t, n = run.trainable_params, run.total_params
        print(
            f"tunesmith: {recipe.task} on {recipe.model_source}: {t:,} / {n:,} trainable parameters "
            f"({100 * t / max(n, 1):.2f}%), {len(run.data.train):,} train examples, "
            f"{run.total_steps} steps",
            flush=True,
        )
    bar = tqdm(
        total=run.total_steps,
        initial=run.state.step,
        desc="train",
        unit="step",
        disable=not (acc.is_main_process and recipe.train.progress),
        dynamic_ncols=True,
    )
    if recipe.train.eval_at_start and has_split(run, "dev") and run.state.step == 0:
        run.dev_at_start = run_eval(run, "dev")
        if run.logger:
            run.logger.log(0, "dev", run.dev_at_start, epoch=0)
    try:
        while run.state.step < run.total_steps and not train_epoch(run, bar, interrupt_at_step):
            pass
        bar.close()
        return finish(run)
    finally:
        bar.close()
        if run.logger:
            run.logger.close()
