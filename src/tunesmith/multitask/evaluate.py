"""Per-task evaluation of a multi-task model and the macro average used to pick the best checkpoint.

Each task is evaluated on its own dev (or test) split with the single-task evaluator
(:func:`tunesmith.train.evaluation.evaluate`, sharded over processes), then its *primary* metric
(accuracy for sequence classification, entity F1 for token classification, or the task's own
``metric``) enters an unweighted mean over tasks::

    mean = (1 / M) * sum_m primary_metric_m

so a small task counts as much as a large one whatever the mixing rates (GLUE/T5 report the same
macro average). Metrics are flattened to ``{"<task>/<metric>": value, ..., "mean": value}`` for
the metrics log, the report and ``train.metric: mean``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tunesmith.data.labels import LabelVocab
from tunesmith.errors import ConfigError
from tunesmith.metrics import LOWER_IS_BETTER, accuracy, macro_f1
from tunesmith.multitask.textformat import classify_by_scoring
from tunesmith.train.evaluation import default_metric, evaluate

__all__ = [
    "MEAN_KEY",
    "TaskEval",
    "evaluate_tasks",
    "evaluate_text_to_text",
    "flatten_task_metrics",
    "macro_average",
    "primary_metric",
]

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
    model: Any,
    tasks: Mapping[str, TaskEval],
    collator: Any,
    accelerator: Any,
    batch_size: int,
) -> dict[str, dict[str, float]]:
    """``{task: metrics}`` for every task that has examples.

    A :class:`~tunesmith.multitask.heads.MultiHeadModel` is evaluated through
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


def evaluate_text_to_text(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    gold: Sequence[str],
    label_words: Sequence[str],
    **score_kw: Any,
) -> dict[str, float]:
    """Accuracy and macro-F1 of a generative model on one classification task by scoring the
    label set (:func:`~tunesmith.multitask.textformat.score_label_set`); ``gold`` are label words.

    Runs on one process (the scoring is not sharded).
    """
    if len(prompts) != len(gold):
        raise ValueError(f"{len(prompts)} prompts but {len(gold)} gold labels")
    index = {w: i for i, w in enumerate(label_words)}
    unknown = sorted({g for g in gold if g not in index})
    if unknown:
        raise ValueError(
            f"gold labels {unknown[:5]} are not among the label words {list(label_words)}"
        )
    preds = classify_by_scoring(model, tokenizer, prompts, label_words, **score_kw)
    ys = [index[g] for g in gold]
    return {
        "accuracy": accuracy(preds, ys),
        "macro_f1": macro_f1(preds, ys, num_labels=len(label_words)),
    }
