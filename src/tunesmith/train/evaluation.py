"""Evaluation of a model on encoded examples: metrics for each task, sharded over processes."""

from __future__ import annotations

import math

import torch
from accelerate.utils import gather_object

from tunesmith.metrics import compute_metrics
from tunesmith.objectives.task import IGNORE_INDEX, model_inputs, task_loss

# Metric used for best-checkpoint selection when the recipe does not name one.
DEFAULT_METRIC = {
    "sequence_classification": "accuracy",
    "token_classification": "f1",
    "causal_lm": "loss",
    "seq2seq": "loss",
    "multi_head": "mean",  # the macro average of the tasks' primary metrics
}
LOWER_IS_BETTER = {"loss", "perplexity"}


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
        logits = model(**model_inputs(task, batch)).logits
        yield idx, batch, logits


def _local_results(model, examples, collator, task, batch_size, accelerator):
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
        if task == "sequence_classification":
            preds += logits.argmax(-1).tolist()
            labels += y.tolist()
        elif task == "token_classification":
            for row_pred, row_y in zip(logits.argmax(-1).tolist(), y.tolist(), strict=True):
                keep = [i for i, t in enumerate(row_y) if t != IGNORE_INDEX]
                preds.append([row_pred[i] for i in keep])
                labels.append([row_y[i] for i in keep])
        else:
            # token-weighted mean NLL over the whole split, not a mean of batch means
            n = int((y[:, 1:] if task == "causal_lm" else y).ne(IGNORE_INDEX).sum())
            nll += float(task_loss(task, logits, y)) * n
            count += n
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
    if task in ("causal_lm", "seq2seq"):
        count = sum(part["count"] for part in parts)
        mean_nll = sum(part["nll"] for part in parts) / max(count, 1)
        return compute_metrics(task, preds=None, labels=None, mean_nll=mean_nll)
    id2label = vocab.id2label if vocab is not None else None
    metrics = compute_metrics(task, preds=preds, labels=labels, id2label=id2label)
    return {k: v for k, v in metrics.items() if not (isinstance(v, float) and math.isnan(v))}
