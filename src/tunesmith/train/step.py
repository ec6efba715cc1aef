"""One optimiser step: forward each micro-batch in the run's precision (task loss + weighted
terms, chunked for ``train.loss_chunk_tokens``), backward with gradients accumulated (synced on
the last micro-batch only), fp16 unscaling, gradient surgery by the terms, clipping, the step
(skipped on an fp16 overflow) and the schedule."""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from tunesmith.distill.chunked import chunked_forward
from tunesmith.errors import TrainingError
from tunesmith.objectives import combine
from tunesmith.optim import clip_gradients
from tunesmith.precision import autocast
from tunesmith.tasks import model_inputs, task_loss
from tunesmith.train.setup import Run


def forward_loss(
    run: Run, batch: dict[str, torch.Tensor], task: str, head: dict[str, Any]
) -> tuple[torch.Tensor, dict[str, float]]:
    """Task loss + terms for one micro-batch of task kind ``task``; ``head`` picks a multi-head
    model's head (``{"task": name}``; empty for a single model)."""
    with autocast(run.precision, run.accelerator.device):
        extra = {k: v for term in run.terms for k, v in term.forward_kwargs().items()}
        inputs = {**model_inputs(task, batch), **extra, **head}
        if run.recipe.train.loss_chunk_tokens:  # causal LM: head + loss per chunk of tokens
            chunk = run.recipe.train.loss_chunk_tokens
            outputs = chunked_forward(run.model, run.raw_model, inputs, chunk, run.terms)
            loss = outputs.lm.loss(batch["labels"])
        else:
            outputs = run.model(**inputs)
            loss = task_loss(task, outputs.logits, batch["labels"])
        return combine(loss, run.terms, run.raw_model, batch, outputs, run.recipe.task_weight)


def optimizer_step(run: Run, micro_batches: list[list[int]]) -> dict[str, float]:
    """Accumulate gradients over the micro-batches, clip, step. Returns logging values."""
    acc, examples = run.accelerator, run.mode.train_examples
    parts_sum: dict[str, float] = {}
    tokens = 0
    for i, idx in enumerate(micro_batches):
        batch = {k: v.to(acc.device) for k, v in run.collator([examples[j] for j in idx]).items()}
        tokens += int(batch["attention_mask"].sum())
        last = i == len(micro_batches) - 1
        sync = contextlib.nullcontext() if last else acc.no_sync(run.model)
        with sync:
            loss, parts = forward_loss(run, batch, *run.mode.route(examples[idx[0]]))
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"non-finite loss ({float(loss.detach())}) at step {run.state.step + 1}; the last good "
                    f"checkpoint is kept in {run.run_dir / 'checkpoints'} (hint: lower optim.lr, "
                    "set optim.max_grad_norm, or use precision: fp32)"
                )
            scaled = loss / len(micro_batches)
            acc.backward(run.scaler.scale(scaled) if run.scaler else scaled)
        for key, value in parts.items():
            parts_sum[key] = parts_sum.get(key, 0.0) + value / len(micro_batches)
    trainable = [p for g in run.optimizer.param_groups for p in g["params"] if p.grad is not None]
    if run.scaler:  # fp16: project and clip the true gradients
        run.scaler.unscale_(run.optimizer)
    for term in run.terms:  # gradient surgery (A-GEM's projection) before clipping
        term.adjust_gradients(run.raw_model, trainable)
    grad_norm = clip_gradients(trainable, run.recipe.optim.max_grad_norm)
    if step_optimizer(run):
        run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    return {**parts_sum, "grad_norm": float(grad_norm), "tokens": tokens}


def step_optimizer(run: Run) -> bool:
    """The optimizer step; with fp16 loss scaling, skipped when the gradients overflowed (the
    scale drops and the schedule waits). Returns whether the weights changed."""
    if run.scaler is None:
        run.optimizer.step()
        return True
    scale = run.scaler.get_scale()
    run.scaler.step(run.optimizer)
    run.scaler.update()
    return run.scaler.get_scale() >= scale
