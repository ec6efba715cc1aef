"""Evaluation of a model on encoded examples: metrics for each task, sharded over processes."""

from __future__ import annotations

import math

import torch
from accelerate.utils import gather_object

from tunesmith.metrics import compute_metrics
from tunesmith.tasks import IGNORE_INDEX, task_kind


def default_metric(task: str, key: str = "task") -> str:
    """The metric for best-checkpoint selection when the recipe names none: the task kind's
    ``default_metric``; ``mean`` (the macro average of the tasks' primary metrics) for multi_head."""
    return "mean" if task == "multi_head" else task_kind(task, key).default_metric


def eval_batches(examples: list[dict], batch_size: int, rank: int = 0, world: int = 1):
    """Indices of this process's shard, sorted by length (less padding), in batches."""
    idx = list(range(rank, len(examples), world))
    idx.sort(key=lambda i: len(examples[i]["input_ids"]))
    return [idx[i : i + batch_size] for i in range(0, len(idx), batch_size)]


@torch.no_grad()
def predict_logits(model, examples, collator, task, batch_size, device, rank=0, world=1):
    """Yield (indices, batch, logits) over this process's shard, in eval mode."""
    model.eval()
    for idx in eval_batches(examples, batch_size, rank, world):
        batch = {k: v.to(device) for k, v in collator([examples[i] for i in idx]).items()}
        logits = model(**task_kind(task).model_inputs(batch)).logits
        yield idx, batch, logits


def _local_results(model, examples, collator, task, batch_size, accelerator):
    kind = task_kind(task)
    preds, labels, nll, count = [], [], 0.0, 0
    for _, batch, logits in predict_logits(
        model,
        examples,
        collator,
        task,
        batch_size,
        accelerator.device,
        accelerator.process_index,
        accelerator.num_processes,
    ):
        y = batch["labels"]
        if kind.generative:
            # token-weighted mean NLL over the whole split, not a mean of batch means
            n = int(y[:, kind.label_shift :].ne(IGNORE_INDEX).sum())
            nll += float(kind.loss(logits, y)) * n
            count += n
        elif kind.per_token:
            for row_pred, row_y in zip(logits.argmax(-1).tolist(), y.tolist(), strict=True):
                keep = [i for i, t in enumerate(row_y) if t != IGNORE_INDEX]
                preds.append([row_pred[i] for i in keep])
                labels.append([row_y[i] for i in keep])
        else:
            preds += logits.argmax(-1).tolist()
            labels += y.tolist()
    return {"preds": preds, "labels": labels, "nll": nll, "count": count}


def evaluate(model, examples, collator, task, vocab, accelerator, batch_size) -> dict[str, float]:
    """Metrics of ``model`` on ``examples`` (all processes take part; every process gets them)."""
    if any("labels" not in ex for ex in examples[:1]):
        raise ValueError("evaluation needs labelled examples")
    was_training = model.training
    parts = gather_object(
        [_local_results(model, examples, collator, task, batch_size, accelerator)]
    )
    model.train(was_training)
    preds = [p for part in parts for p in part["preds"]]
    labels = [y for part in parts for y in part["labels"]]
    if task_kind(task).generative:
        count = sum(part["count"] for part in parts)
        mean_nll = sum(part["nll"] for part in parts) / max(count, 1)
        return compute_metrics(task, preds=None, labels=None, mean_nll=mean_nll)
    id2label = vocab.id2label if vocab is not None else None
    metrics = compute_metrics(task, preds=preds, labels=labels, id2label=id2label)
    return {k: v for k, v in metrics.items() if not (isinstance(v, float) and math.isnan(v))}
