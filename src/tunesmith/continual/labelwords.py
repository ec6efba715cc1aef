"""Causal-LM tasks scored by their label words: text-to-text classification in a task sequence.

A causal-LM stage whose responses are label words (``"sentence: a charming film"`` ->
``"positive"``) is a classification task written as text. With ``continual.metric: accuracy``
(or ``macro_f1``) the sequence scores it the way text-to-text multi-task runs do: every test
example's label words are ranked by their likelihood after its prompt (rank classification,
:func:`tunesmith.train.scoring.evaluate_text_to_text`), each rendered exactly as training renders
it. A task's label words are ``continual.label_words.<task>`` when given, else the distinct
responses of its training split (at most :data:`MAX_LABEL_WORDS`: more means open-ended answers,
which a label set cannot score).
"""

from __future__ import annotations

from typing import Any

from tunesmith.continual.data import TaskData
from tunesmith.data.chatformats import split_format
from tunesmith.errors import ConfigError
from tunesmith.train.scoring import evaluate_text_to_text

__all__ = ["LABEL_METRICS", "MAX_LABEL_WORDS", "label_words", "score_by_label_words"]

LABEL_METRICS = ("accuracy", "macro_f1")
"""The ``continual.metric`` values that score a causal-LM task by its label words."""
MAX_LABEL_WORDS = 50
"""Most distinct training responses read as a label set (give ``continual.label_words`` for more)."""


def label_words(task: TaskData, given: list[str] | None, split: str) -> list[str]:
    """Task ``task``'s label words: ``given``, else its distinct training responses, sorted.
    Checks that its records are prompt/response pairs and that every ``split`` (scored)
    response is one of the words; a ConfigError names the stage otherwise."""
    d = task.recipe.data
    where = f"stages[{task.name}]"
    train = task.splits.get("train", [])
    fmt = split_format(train, d.chat_format, d.prompt_key, d.lm_text_key)
    if fmt != "alpaca":
        raise ConfigError(
            f"{where}.data",
            f"label-word scoring needs prompt/response records (alpaca fields, or prompt_key / "
            f"response_key), but this task's records are read as {fmt}",
            "score it by perplexity (continual.metric: perplexity)",
        )
    words = list(given) if given else _responses(train, d.response_key, where)
    if not given and len(words) > MAX_LABEL_WORDS:
        raise ConfigError(
            "continual.metric",
            f"task {task.name!r} has {len(words)} distinct responses: open-ended answers, not "
            f"label words (at most {MAX_LABEL_WORDS} are read as a label set)",
            f"score by perplexity, or list the words in continual.label_words.{task.name}",
        )
    known = set(words)
    for i, rec in enumerate(task.splits.get(split, [])):
        if rec.get(d.response_key) not in known:
            raise ConfigError(
                f"continual.label_words.{task.name}",
                f"{split} example {i} of task {task.name!r} answers "
                f"{rec.get(d.response_key)!r}, which is not one of its label words {words[:8]}",
                "list every answer in continual.label_words (or fix the data)",
            )
    return words


def _responses(records: list[dict[str, Any]], key: str, where: str) -> list[str]:
    words: dict[str, None] = {}
    for i, rec in enumerate(records):
        value = rec.get(key)
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(
                f"{where}.data.response_key", f"train example {i} has no text response {key!r}"
            )
        words[value] = None
    return sorted(words)


def score_by_label_words(
    model: Any, tokenizer: Any, task: TaskData, words: list[str], split: str
) -> dict[str, float]:
    """Accuracy and macro-F1 of ``model`` on ``task``'s ``split`` by ranking ``words``."""
    d = task.recipe.data
    records = task.splits[split]
    return evaluate_text_to_text(
        model,
        tokenizer,
        records,
        [r[d.response_key] for r in records],
        words,
        template=d.template,
        system=d.system,
        prompt_key=d.prompt_key,
        batch_size=task.recipe.train.eval_batch_size,
        max_length=d.max_length,
    )
