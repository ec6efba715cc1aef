"""The one training loop: every technique plugs in as data, model changes or objective terms.

Per optimiser step (:mod:`tunesmith.train.step`): forward each micro-batch, task loss + weighted
extra terms, backward (gradients accumulate), clip, AdamW step, schedule step. Evaluation on dev every N steps keeps
the best model; checkpoints make a killed run resumable with the same final weights.

What kind of run it is (one task, a multi-head mixture, text-to-text) is behind ``run.mode``
(:mod:`tunesmith.train.modes`): its epoch plan, where a batch goes, evaluation and what the end
of the run exports; the loop itself has no branch on it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from accelerate.utils import gather_object
from safetensors.torch import load_file
from safetensors.torch import load_model as load_safetensors_model
from tqdm.auto import tqdm

from tunesmith.adapters import (
    delete_adapter,
    fusion_attention,
    load_adapter,
    load_adapter_weights,
)
from tunesmith.atomic import atomic_write_json
from tunesmith.causalattn import kernel_choices
from tunesmith.config import Recipe
from tunesmith.errors import TrainingError
from tunesmith.packedattn import PACKED
from tunesmith.pooling import current_pooling
from tunesmith.precision import autocast
from tunesmith.report import write_report
from tunesmith.train.callbacks import CallbackList, callback_stop, stopped_summary, train_info
from tunesmith.train.checkpoint import (
    find_checkpoint,
    load_checkpoint,
    mark_finished,
    save_best,
    save_checkpoint,
)
from tunesmith.train.distill_results import describe_results, distill_results
from tunesmith.train.given import Given, remember_trained
from tunesmith.train.logging import MetricsLogger
from tunesmith.train.modelcard import write_model_card
from tunesmith.train.runfolder import RunLock, disk_bytes, trim_metrics
from tunesmith.train.setup import Run, make_accelerator, setup_run
from tunesmith.train.sharding import copy_weights, full_weights, state_bytes
from tunesmith.train.step import optimizer_step
from tunesmith.train.trackers import open_trackers


class Interrupted(Exception):
    """Raised by ``interrupt_at_step`` (tests simulate a killed run with it)."""


def best_meta(run: Run, metrics: dict[str, float]) -> dict[str, Any]:
    return {
        "task": run.recipe.task,
        "base_model": run.recipe.model_source,
        "step": run.state.step,
        "metric": run.metric,
        "dev": metrics,
        "labels": run.mode.labels(),
        "pooling": current_pooling(run.raw_model),  # sequence head input (tunesmith.pooling)
    }


def evaluate_and_keep_best(run: Run) -> bool:
    """Evaluate on dev, save ``best/`` on improvement. Returns True when early stopping fires."""
    state, tr = run.state, run.recipe.train
    with autocast(run.precision, run.accelerator.device):  # dev in the run's precision
        metrics = run.mode.evaluate(run.raw_model, "dev")
    if run.logger:
        run.logger.log(state.step, "dev", metrics, epoch=state.epoch)
    run.callbacks.call("on_evaluate", state.step, "dev", metrics)
    if run.metric not in metrics:
        raise TrainingError(
            f"train.metric {run.metric!r} is not computed for this task; "
            f"available: {sorted(metrics)}"
        )
    value = metrics[run.metric]
    if state.improved(value, run.greater_is_better):
        state.best_metric, state.best_step, state.bad_evals = value, state.step, 0
        with full_weights(run.raw_model) as main:  # gathered when sharded
            if main:
                save_best(
                    run.raw_model, run.tokenizer, run.run_dir, best_meta(run, metrics), run.adapter
                )
                run.callbacks.call("on_save", state.step, run.run_dir / "best")
    else:
        state.bad_evals += 1
    run.accelerator.wait_for_everyone()
    patience = tr.early_stopping_patience
    return patience is not None and state.bad_evals >= patience


def current_lr(run: Run) -> float:
    """The peak learning rate now (the first group's, undone of its layer-wise scale)."""
    return run.scheduler.get_last_lr()[0] / run.optimizer.param_groups[0].get("lr_scale", 1.0)


def log_train(run: Run, window: list[dict[str, float]], elapsed: float) -> dict[str, float]:
    tokens = sum(w["tokens"] for w in window)
    keys = [k for k in window[0] if k != "tokens"]
    values = {k: sum(w[k] for w in window) / len(window) for k in keys}
    values["lr"] = current_lr(run)
    values["tokens_per_s"] = tokens * run.accelerator.num_processes / max(elapsed, 1e-9)
    if run.logger:
        run.logger.log(run.state.step, "train", values, epoch=run.state.epoch)
    return values


def train_epoch(run: Run, bar: tqdm, interrupt_at_step: int | None) -> bool:
    """Run the rest of the current epoch. Returns True when training should stop."""
    state, tr = run.state, run.recipe.train
    plan = run.mode.plan(state.epoch)
    if state.step_in_epoch >= len(plan):  # never spin on an empty rest of the epoch
        raise TrainingError(
            f"the saved position (step {state.step_in_epoch} of epoch {state.epoch}) is past the "
            f"end of the epoch's {len(plan)} steps: the training data changed since the "
            "checkpoint; resume with the same data or start a new run"
        )
    run.model.train()
    window, t0 = [], time.perf_counter()
    for micro_batches in plan[state.step_in_epoch :]:
        window.append(optimizer_step(run, micro_batches))
        state.step += 1
        state.step_in_epoch += 1
        state.tokens += window[-1]["tokens"]
        bar.update(1)
        if run.callbacks:
            step_values = {k: v for k, v in window[-1].items() if k != "tokens"}
            run.callbacks.call("on_step", state.step, {**step_values, "lr": current_lr(run)})
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
    """Evaluate / checkpoint when due. Returns True on early stop or when a callback asked to
    stop (a checkpoint of this step is saved then, so the run can resume)."""
    state, tr = run.state, run.recipe.train
    last = state.step >= run.total_steps
    if end_of_epoch:
        state.epoch += 1
        state.step_in_epoch = 0
        if run.unfreezer and run.recipe.transfer.gradual_unfreeze.unit == "epochs":
            run.unfreezer.advance()
    due_eval = (state.step % tr.eval_every == 0) if tr.eval_every else end_of_epoch
    stop = False
    if run.mode.has("dev") and (due_eval or last):
        stop = evaluate_and_keep_best(run)
    stop = stop or callback_stop(run)
    due_save = (state.step % tr.save_every == 0) if tr.save_every else (due_eval or last)
    if due_save or stop:
        if run.unfreezer:
            state.unfreezer = run.unfreezer.state_dict()
        ckpt = save_checkpoint(
            run.accelerator, run.run_dir, state, run.resumable, tr.keep_checkpoints
        )
        run.callbacks.call("on_save", state.step, ckpt)
    return stop


def resume_from_checkpoint(run: Run) -> None:
    """Restore the newest intact checkpoint (a damaged newer one is skipped with a warning) and
    trim ``metrics.jsonl`` to it, so no step is logged twice."""
    acc = run.accelerator
    ckpt = find_checkpoint(run.run_dir, acc.num_processes, acc.print)
    if ckpt is None:
        acc.print(f"no checkpoint in {run.run_dir}; starting from step 0")
    else:
        run.state = load_checkpoint(acc, ckpt, run.resumable)
        if run.unfreezer and run.state.unfreezer:
            run.unfreezer.load_state_dict(run.state.unfreezer)
        acc.print(f"resumed from {ckpt} (step {run.state.step})")
    if acc.is_main_process:
        trim_metrics(run.run_dir, run.state.step if ckpt is not None else -1)
    acc.wait_for_everyone()


def reload_best(run: Run, best: Path) -> None:
    """Put the weights of ``best/`` back into the model (full weights, or the adapter + head)."""
    if run.sharded:  # into the main process's full weights, then scattered to the shards
        with full_weights(run.raw_model, write_back=True) as main:
            if main and run.adapter is None:
                copy_weights(run.raw_model, load_file(str(best / "model.safetensors")))
            elif main:
                load_adapter_weights(run.raw_model, best, run.adapter[0])
        return
    load_saved = getattr(run.raw_model, "load_saved", None)  # its own best/ layout (per-task
    if run.adapter is None and load_saved is not None:  # adapters: adapters/pertask.py)
        load_saved(best)
        return
    if run.adapter is None:
        load_safetensors_model(run.raw_model, str(best / "model.safetensors"), strict=False)
        return
    name = run.adapter[0]
    delete_adapter(run.raw_model, name)
    load_adapter(run.raw_model, best, name)


def finish(run: Run) -> dict[str, Any]:
    """Reload the best weights, evaluate dev and test, write summary.json and the report."""
    acc, state = run.accelerator, run.state
    best = run.run_dir / "best"
    scored_step = state.step  # the step whose weights the final metrics score
    if run.mode.has("dev") and (best / "tunesmith.json").is_file():
        reload_best(run, best)
        scored_step = state.best_step if state.best_step is not None else state.step
    else:  # no dev set: the final model is the result
        with full_weights(run.raw_model) as main:
            if main:
                meta = best_meta(run, {})
                save_best(run.raw_model, run.tokenizer, run.run_dir, meta, run.adapter)
    acc.wait_for_everyone()
    summary = {
        "task": run.recipe.task,
        "model": run.recipe.model_source,
        "steps": state.step,
        "epochs": round(state.step / run.mode.steps_per_epoch, 3),
        "best_step": state.best_step,
        "metric": run.metric,
        "train_examples": len(run.mode.train_examples),
        "wall_s": round(state.wall_s, 1),
        "tokens_per_s": round(state.tokens * acc.num_processes / max(state.wall_s, 1e-9), 1),
        "trainable_params": run.trainable_params,
        "total_params": run.total_params,
        "distributed": run.recipe.train.distributed.strategy if acc.num_processes > 1 else None,
        "state_bytes_per_rank": gather_object([state_bytes(run.raw_model, run.optimizer)]),
    }
    if run.precision is not None:
        summary["precision"] = run.precision.record()
    if run.attention is not None:
        summary["attention"] = run.attention
    if run.attention == PACKED and kernel_choices():  # its kernels, measured (causalattn)
        summary["attention_kernels"] = kernel_choices()
    if run.dev_at_start is not None:
        summary["dev_at_start"] = run.dev_at_start
    summary.update(run.mode.finish(run.raw_model, best))
    confusion = {}
    for split in ("dev", "test"):
        if run.mode.has(split):
            with autocast(run.precision, acc.device), fusion_attention(run.raw_model) as fused:
                result = run.mode.evaluate_detailed(run.raw_model, split)
            if fused and split == "dev":  # AdapterFusion: mean attention per layer on dev
                summary["fusion"] = fused
            summary[split] = result.metrics
            if result.confusion is not None:  # rows: gold label, columns: predicted
                confusion[split] = {"labels": result.labels, "matrix": result.confusion}
            if run.logger:
                run.logger.log(scored_step, f"final_{split}", summary[split])
            run.callbacks.call("on_evaluate", scored_step, f"final_{split}", summary[split])
    if confusion:
        summary["confusion"] = confusion
    if run.recipe.distill is not None:  # how the student compares with its teacher
        summary["distill"] = distill_results(run, summary)
        for line in describe_results(summary["distill"]):
            acc.print(line)
    if acc.is_main_process:
        mark_finished(run.run_dir, state.step)  # a finished run needs no optimizer state
        summary["disk_bytes"] = disk_bytes(run.run_dir)
        atomic_write_json(run.run_dir / "summary.json", summary)
        write_report(run.run_dir, title=f"tunesmith run: {run.run_dir.name}")
        write_model_card(run.run_dir, run.recipe)  # best/README.md
        print(f"run folder: {summary['disk_bytes'] / 1e6:,.1f} MB on disk", flush=True)
    return summary


def train(
    recipe: Recipe,
    run_dir: str | Path | None = None,
    resume: bool = False,
    interrupt_at_step: int | None = None,
    *,
    model: Any = None,
    tokenizer: Any = None,
    datasets: Any = None,
    callbacks: Any = (),
) -> dict[str, Any]:
    """Train ``recipe``; returns the summary (also in ``run_dir/summary.json``).

    ``model`` / ``tokenizer`` / ``datasets``: objects that replace what the recipe would load
    (:class:`~tunesmith.train.given.Given`); ``callbacks``: see :mod:`tunesmith.train.callbacks`.
    The run folder is locked for the whole run (a second process on it stops at once)."""
    run_dir = Path(run_dir or recipe.output_dir)
    accelerator = make_accelerator(recipe)
    given = Given(model=model, tokenizer=tokenizer, datasets=datasets)
    lock = RunLock(run_dir)
    if accelerator.is_main_process:
        lock.acquire()
    run = None
    try:
        run = setup_run(recipe, run_dir, resume, accelerator, given)
        run.callbacks = CallbackList(callbacks, enabled=accelerator.is_main_process)
        return train_locked(run, resume, interrupt_at_step)
    finally:
        lock.release()
        # trained in place: resumable with it (a sharded model's weights are spread over processes)
        if run is not None and model is not None and not run.sharded:
            remember_trained(model, run.start_digest)


def train_locked(run: Run, resume: bool, interrupt_at_step: int | None) -> dict[str, Any]:
    """Resume (when asked), train to the end, finish."""
    recipe, acc = run.recipe, run.accelerator
    if resume:
        resume_from_checkpoint(run)
    if acc.is_main_process:
        tensorboard = recipe.train.tensorboard or "tensorboard" in recipe.train.report_to
        trackers = open_trackers(recipe, run.run_dir)  # train.report_to: wandb, mlflow, ...
        run.logger = MetricsLogger(run.run_dir, tensorboard=tensorboard, trackers=trackers)
        t, n = run.trainable_params, run.total_params
        print(
            f"tunesmith: {recipe.task} on {recipe.model_source}: {t:,} / {n:,} trainable parameters "
            f"({100 * t / max(n, 1):.2f}%), {len(run.mode.train_examples):,} train examples, "
            f"{run.total_steps} steps",
            flush=True,
        )
    run.callbacks.call("on_train_begin", train_info(run))
    bar = tqdm(
        total=run.total_steps,
        initial=run.state.step,
        desc="train",
        unit="step",
        # None: tqdm shows the bar on a terminal only (no bar lines in a redirected log)
        disable=None if acc.is_main_process and recipe.train.progress else True,
        dynamic_ncols=True,
    )
    if recipe.train.eval_at_start and run.mode.has("dev") and run.state.step == 0:
        with autocast(run.precision, acc.device):
            run.dev_at_start = run.mode.evaluate(run.raw_model, "dev")
        if run.logger:
            run.logger.log(0, "dev", run.dev_at_start, epoch=0)
        run.callbacks.call("on_evaluate", 0, "dev", run.dev_at_start)
    try:
        while (
            not run.state.finished
            and run.state.step < run.total_steps
            and not train_epoch(run, bar, interrupt_at_step)
        ):
            pass
        bar.close()
        stopped = run.callbacks.should_stop and run.state.step < run.total_steps
        summary = stopped_summary(run) if stopped else finish(run)
        run.callbacks.call("on_train_end", summary)
        return summary
    finally:
        bar.close()
        if run.logger:
            run.logger.close()
