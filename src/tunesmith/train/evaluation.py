"""Evaluation of a model on encoded examples: metrics for each task, sharded over processes.

A multi-task run evaluates each task on its own split with :func:`evaluate`, then its *primary*
metric (accuracy for sequence classification, entity F1 for token classification, or the task's
own ``metric``) enters an unweighted mean over tasks::

    mean = (1 / M) * sum_m primary_metric_m

so a small task counts as much as a large one whatever the mixing rates (GLUE/T5 report the same
macro average). Metrics are flattened to ``{"<task>/<metric>": value, ..., "mean": value}`` for
the metrics log, the report and ``train.metric: mean``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object
from torch import nn

from tunesmith.data.labels import LabelVocab
from tunesmith.distill.chunked import chunked_causal_lm_loss, forward_hidden, lm_head
from tunesmith.errors import ConfigError
from tunesmith.metrics import LOWER_IS_BETTER, compute_metrics, confusion_matrix
from tunesmith.tasks import IGNORE_INDEX, task_kind


def default_metric(task: str, key: str = "task") -> str:
    """The metric for best-checkpoint selection when the recipe names none: the task kind's
    ``default_metric``; ``mean`` (the macro average of the tasks' primary metrics) for multi_head."""
    return "mean" if task == "multi_head" else task_kind(task, key).default_metric


# A collator: examples -> padded tensors (data.collate.Collator, distill.collate.DistillCollator).
Collate = Callable[[Sequence[dict[str, Any]]], dict[str, torch.Tensor]]


def eval_batches(
    examples: list[dict], batch_size: int, rank: int = 0, world: int = 1
) -> list[list[int]]:
    """Indices of this process's shard, sorted by length (less padding), in batches."""
    idx = list(range(rank, len(examples), world))
    idx.sort(key=lambda i: len(examples[i]["input_ids"]))
    return [idx[i : i + batch_size] for i in range(0, len(idx), batch_size)]


def shard_batches(
    examples: list[dict],
    collator: Collate,
    batch_size: int,
    device: torch.device,
    rank: int = 0,
    world: int = 1,
) -> Iterator[tuple[list[int] | None, dict[str, torch.Tensor]]]:
    """(indices, batch) over this process's shard, then (None, a filler batch) until every
    process has run as many forwards: a sharded model (FSDP) gathers each block's weights from
    all processes in every forward, so the caller runs the model on the fillers too."""
    batches = eval_batches(examples, batch_size, rank, world)
    for idx in batches:
        yield idx, {k: v.to(device) for k, v in collator([examples[i] for i in idx]).items()}
    most = math.ceil(math.ceil(len(examples) / world) / batch_size)
    for _ in range(most - len(batches)):
        yield None, {k: v.to(device) for k, v in collator(examples[:1]).items()}


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    examples: list[dict],
    collator: Collate,
    task: str,
    batch_size: int,
    device: torch.device,
    rank: int = 0,
    world: int = 1,
) -> Iterator[tuple[list[int], dict[str, torch.Tensor], torch.Tensor]]:
    """Yield (indices, batch, logits) over this process's shard, in eval mode (every process
    runs as many forwards: :func:`shard_batches`)."""
    model.eval()
    for idx, batch in shard_batches(examples, collator, batch_size, device, rank, world):
        logits = model(**task_kind(task).model_inputs(batch)).logits
        if idx is not None:
            yield idx, batch, logits


@torch.no_grad()
def _chunked_nll(model, examples, collator, batch_size, accelerator, chunk: int) -> dict:
    """Causal LM with ``train.loss_chunk_tokens``: the summed NLL without any full logits."""
    head = lm_head(model)
    nll, count = 0.0, 0
    model.eval()
    rank, world = accelerator.process_index, accelerator.num_processes
    batches = shard_batches(examples, collator, batch_size, accelerator.device, rank, world)
    for idx, batch in batches:
        inputs = task_kind("causal_lm").model_inputs(batch)
        _, hidden = forward_hidden(model, head.module, inputs)
        y = batch["labels"]
        loss = chunked_causal_lm_loss(hidden, y, head, chunk)  # fillers too: the same calls
        if idx is None:  # a filler (FSDP: every process runs as many forwards)
            continue
        n = int(y[:, 1:].ne(IGNORE_INDEX).sum())
        nll += float(loss) * n
        count += n
    return {"preds": [], "labels": [], "nll": nll, "count": count}


def _local_results(model, examples, collator, task, batch_size, accelerator, chunk=None):
    kind = task_kind(task)
    if chunk is not None and task == "causal_lm":
        return _chunked_nll(model, examples, collator, batch_size, accelerator, chunk)
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


@dataclass
class Evaluation:
    """Metrics of one split, and for single-label classification the confusion matrix
    (``confusion[gold][predicted]`` over label ids, :func:`~tunesmith.metrics.confusion_matrix`)."""

    metrics: dict[str, float]
    confusion: list[list[int]] | None = None
    labels: list[str] | None = None  # the confusion matrix's label names, in id order


def evaluate_detailed(
    model: nn.Module,
    examples: list[dict],
    collator: Collate,
    task: str,
    vocab: LabelVocab | None,
    accelerator: Accelerator,
    batch_size: int,
    loss_chunk_tokens: int | None = None,
) -> Evaluation:
    """:func:`evaluate`, with the confusion matrix where the task has one (all processes call it).
    ``loss_chunk_tokens``: a causal LM's mean NLL chunk by chunk, without the full logits."""
    if any("labels" not in ex for ex in examples[:1]):
        raise ValueError("evaluation needs labelled examples")
    was_training = model.training
    local = _local_results(
        model, examples, collator, task, batch_size, accelerator, loss_chunk_tokens
    )
    parts = gather_object([local])
    model.train(was_training)
    preds = [p for part in parts for p in part["preds"]]
    labels = [y for part in parts for y in part["labels"]]
    kind = task_kind(task)
    if kind.generative:
        count = sum(part["count"] for part in parts)
        mean_nll = sum(part["nll"] for part in parts) / max(count, 1)
        return Evaluation(compute_metrics(task, preds=None, labels=None, mean_nll=mean_nll))
    id2label = vocab.id2label if vocab is not None else None
    metrics = compute_metrics(task, preds=preds, labels=labels, id2label=id2label)
    metrics = {k: v for k, v in metrics.items() if not (isinstance(v, float) and math.isnan(v))}
    if kind.per_token or vocab is None:
        return Evaluation(metrics)
    names = list(vocab.named_id2label.values())
    return Evaluation(metrics, confusion_matrix(preds, labels, len(names)), names)


def evaluate(
    model: nn.Module,
    examples: list[dict],
    collator: Collate,
    task: str,
    vocab: LabelVocab | None,
    accelerator: Accelerator,
    batch_size: int,
) -> dict[str, float]:
    """Metrics of ``model`` on ``examples`` (all processes take part; every process gets them)."""
    return evaluate_detailed(
        model, examples, collator, task, vocab, accelerator, batch_size
    ).metrics


MEAN_KEY = "mean"


@dataclass
class TaskEval:
    """One task's evaluation split: encoded ``examples`` (with labels), the task ``kind``
    (``sequence_classification``, ``token_classification``, ``causal_lm``, ``seq2seq``), its
    label ``vocab`` (token tasks need it for entity F1) and an optional primary ``metric``."""

    examples: list[dict]
    kind: str
    vocab: LabelVocab | None = None
    metric: str | None = None


def primary_metric(kind: str, metric: str | None = None) -> str:
    """The metric a task contributes to the mean: ``metric`` or the task kind's default."""
    if metric is not None:
        return metric
    return default_metric(kind, "tasks[].head")


def evaluate_tasks(
    model: nn.Module,
    tasks: Mapping[str, TaskEval],
    collator: Collate,
    accelerator: Accelerator,
    batch_size: int,
) -> dict[str, dict[str, float]]:
    """``{task: metrics}`` for every task that has examples.

    A :class:`~tunesmith.heads.MultiHeadModel` is evaluated through
    ``model.task_view(task)`` (that task's head); any other model (one text-to-text model for all
    tasks) is evaluated as it is, with the task's own ``kind``. All processes must call this.
    """
    out: dict[str, dict[str, float]] = {}
    for name, t in tasks.items():
        if not t.examples:
            continue
        view = model.task_view(name) if hasattr(model, "task_view") else model
        out[name] = evaluate(view, t.examples, collator, t.kind, t.vocab, accelerator, batch_size)
    return out


def macro_average(per_task: Mapping[str, Mapping[str, float]], metrics: Mapping[str, str]) -> float:
    """Unweighted mean over tasks of ``per_task[task][metrics[task]]``.

    Raises :class:`ConfigError` when a task lacks its metric or when the metrics mix directions
    (a loss with an accuracy), since such a mean cannot rank checkpoints.
    """
    if not per_task:
        raise ValueError("no task was evaluated")
    directions = {metrics[t] in LOWER_IS_BETTER for t in per_task}
    if len(directions) > 1:
        raise ConfigError(
            "tasks[].metric",
            f"cannot average {sorted({metrics[t] for t in per_task})}: some are better when "
            "higher, some when lower",
            "give every task a metric of the same direction (e.g. accuracy and f1)",
        )
    values = []
    for task, scores in per_task.items():
        name = metrics[task]
        if name not in scores:
            raise ConfigError(
                f"tasks[{task}].metric", f"{name!r} is not computed", f"available: {sorted(scores)}"
            )
        values.append(float(scores[name]))
    return math.fsum(values) / len(values)


def flatten_task_metrics(
    per_task: Mapping[str, Mapping[str, float]], metrics: Mapping[str, str]
) -> dict[str, float]:
    """``{"<task>/<metric>": value, ..., "mean": macro average}``, one flat dict for logging."""
    flat = {f"{task}/{k}": v for task, scores in per_task.items() for k, v in scores.items()}
    flat[MEAN_KEY] = macro_average(per_task, metrics)
    return flat
