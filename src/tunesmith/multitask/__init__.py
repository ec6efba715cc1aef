"""Multi-task learning (T5 §3.5): mixtures of tasks, per-task heads, text-to-text, per-task eval.

* :mod:`~tunesmith.multitask.mixing` — mixing rates (examples-proportional with cap K,
  temperature, equal, explicit) and :class:`MixtureSampler`, a resumable plan of homogeneous
  batches;
* :mod:`~tunesmith.multitask.heads` — :class:`MultiHeadModel`, a shared encoder with one head per
  task, its save/load, and :func:`export_task` to a plain single-task HF model;
* :mod:`~tunesmith.multitask.textformat` — T5-style prefixes and label words, and classification by
  scoring the label set with a causal LM or seq2seq model;
* :mod:`~tunesmith.multitask.evaluate` — per-task metrics and their macro average.

Multi-task is a data concern: the single training loop only needs to know which task a batch comes
from (to pick the head and loss) and to evaluate each task. See ``docs/multitask.md``.
"""

from tunesmith.multitask.evaluate import (
    MEAN_KEY,
    TaskEval,
    evaluate_tasks,
    evaluate_text_to_text,
    flatten_task_metrics,
    macro_average,
    primary_metric,
)
from tunesmith.multitask.heads import HeadSpec, MultiHeadModel, TaskHead, export_task
from tunesmith.multitask.mixing import (
    DEFAULT_TEMPERATURE,
    STRATEGIES,
    MicroBatch,
    MixtureSampler,
    concat_tasks,
    describe_rates,
    mixing_rates,
    mixture_steps_per_epoch,
    observed_rates,
)
from tunesmith.multitask.textformat import (
    TextFormat,
    classify_by_scoring,
    score_label_set,
    verbaliser,
)

__all__ = [
    "DEFAULT_TEMPERATURE",
    "MEAN_KEY",
    "STRATEGIES",
    "HeadSpec",
    "MicroBatch",
    "MixtureSampler",
    "MultiHeadModel",
    "TaskEval",
    "TaskHead",
    "TextFormat",
    "classify_by_scoring",
    "concat_tasks",
    "describe_rates",
    "evaluate_tasks",
    "evaluate_text_to_text",
    "export_task",
    "flatten_task_metrics",
    "macro_average",
    "mixing_rates",
    "mixture_steps_per_epoch",
    "observed_rates",
    "primary_metric",
    "score_label_set",
    "verbaliser",
]
