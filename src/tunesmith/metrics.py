"""Evaluation metrics: pure functions over predictions and references (numpy / plain Python).

Every metric is registered by name in :data:`METRICS`; :func:`compute_metrics` picks the standard
set for a task type so the training loop never needs to know which metrics a task uses.

* ``accuracy`` / ``macro_f1`` — sequence classification (label ids).
* ``entity_f1`` — token classification; chunks IOB1/IOB2 tags exactly like ``seqeval``'s default
  (conlleval-compatible) mode, so numbers are comparable with published NER results.
* ``exact_match`` — generated answers, SQuAD-style normalisation.
* ``perplexity`` — language modelling, from the mean per-token negative log-likelihood.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from tunesmith.registry import TASKS, Registry

__all__ = [
    "LOWER_IS_BETTER",
    "METRICS",
    "accuracy",
    "classification_metrics",
    "compute_metrics",
    "confusion_matrix",
    "entity_f1",
    "entity_spans",
    "exact_match",
    "generation_metrics",
    "greater_is_better",
    "macro_f1",
    "normalize_answer",
    "perplexity",
    "token_metrics",
]

# math.exp overflows past log(float max) ~= 709.78; beyond that perplexity is reported as inf.
_MAX_EXP_ARG = math.log(np.finfo(np.float64).max)


def _paired(preds: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Both inputs as 1-D arrays of equal, non-zero length (a ValueError says which rule broke)."""
    p, y = np.asarray(preds).reshape(-1), np.asarray(labels).reshape(-1)
    if p.shape != y.shape:
        raise ValueError(f"preds and labels differ in length: {p.size} vs {y.size}")
    if p.size == 0:
        raise ValueError("no examples to score (preds and labels are empty)")
    return p, y


def accuracy(preds: ArrayLike, labels: ArrayLike) -> float:
    """Fraction of positions where the prediction equals the label: ``mean(pred_i == label_i)``.

    ``preds`` and ``labels`` are label ids (or strings) of the same length, any shape (flattened).
    """
    p, y = _paired(preds, labels)
    return float(np.mean(p == y))


def macro_f1(preds: ArrayLike, labels: ArrayLike, num_labels: int | None = None) -> float:
    """Unweighted mean of per-class F1.

    For class ``c``: ``F1_c = 2 TP_c / (2 TP_c + FP_c + FN_c)``, which equals
    ``2 P R / (P + R)`` and is 0 when ``TP_c = 0`` (also when the class never occurs).
    ``macro_f1 = mean_c F1_c`` over the classes in ``labels ∪ preds``, or over
    ``0 .. num_labels - 1`` when ``num_labels`` is given (then a class that never occurs counts as
    0, as in scikit-learn's ``f1_score(average="macro", labels=range(num_labels))``).
    """
    p, y = _paired(preds, labels)
    if num_labels is None:
        classes = np.union1d(p, y)
    else:
        if num_labels < 1:
            raise ValueError(f"num_labels must be >= 1, got {num_labels}")
        both = np.concatenate([p, y])
        bad = np.unique(both[(both < 0) | (both >= num_labels)])
        if bad.size:
            raise ValueError(f"label ids {bad[:5].tolist()} are outside 0..{num_labels - 1}")
        classes = np.arange(num_labels)
    scores = []
    for c in classes:
        tp = int(np.sum((p == c) & (y == c)))
        fp = int(np.sum((p == c) & (y != c)))
        fn = int(np.sum((p != c) & (y == c)))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return float(np.mean(scores))


def _split_tag(tag: str) -> tuple[str, str]:
    """``"B-PER"`` -> ``("B", "PER")``; a tag without a type (``"O"``, ``"B"``) has type ``"_"``."""
    return tag[:1], tag[1:].split("-", maxsplit=1)[-1] or "_"


def _ends_chunk(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    # conlleval's endOfChunk: a chunk closes before an O or a B, after an E/S, or on a type change.
    if prev_tag in ("E", "S"):
        return True
    if prev_tag in ("B", "I") and tag in ("B", "S", "O"):
        return True
    return prev_tag not in ("O", ".") and prev_type != type_


def _starts_chunk(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    # conlleval's startOfChunk: B/S always open; I/E open after O/E/S ("I- without B-" starts a
    # chunk, which is what makes IOB1 work); any non-O tag opens a chunk when the type changes.
    if tag in ("B", "S"):
        return True
    if prev_tag in ("O", "E", "S") and tag in ("I", "E"):
        return True
    return tag not in ("O", ".") and prev_type != type_


def entity_spans(tags: Sequence[str]) -> set[tuple[str, int, int]]:
    """Chunks of one tag sequence as ``(type, start, end)`` with ``end`` **inclusive**.

    Same chunking as ``seqeval.metrics.sequence_labeling.get_entities`` (default, non-strict mode)
    and conlleval: ``I-X`` after ``O`` or after a chunk of another type starts a new chunk; a type
    change ends the current chunk, so ``B-PER I-LOC`` is two chunks. Works for IOB1 and IOB2.

    >>> sorted(entity_spans(["B-PER", "I-PER", "O", "I-LOC", "B-LOC"]))
    [('LOC', 3, 3), ('LOC', 4, 4), ('PER', 0, 1)]
    """
    spans: set[tuple[str, int, int]] = set()
    prev_tag, prev_type, begin = "O", "", 0
    for i, raw in enumerate([*tags, "O"]):  # the trailing O closes a chunk still open at the end
        tag, type_ = _split_tag(raw)
        if _ends_chunk(prev_tag, tag, prev_type, type_):
            spans.add((prev_type, begin, i - 1))
        if _starts_chunk(prev_tag, tag, prev_type, type_):
            begin = i
        prev_tag, prev_type = tag, type_
    return spans


def _flatten_sentences(sentences: Sequence[Sequence[str]]) -> list[str]:
    # seqeval joins sentences with an "O" after each one and chunks the result as one sequence;
    # doing the same keeps even malformed tags (e.g. a bare "X") scoring exactly as seqeval does.
    flat: list[str] = []
    for sentence in sentences:
        flat.extend(sentence)
        flat.append("O")
    return flat


def entity_f1(
    true_tags: Sequence[Sequence[str]], pred_tags: Sequence[Sequence[str]]
) -> dict[str, float]:
    """Micro-averaged entity precision, recall and F1 over sentences of IOB tags.

    A predicted entity counts only if type, start and end all match a true entity::

        precision = |true ∩ pred| / |pred|     recall = |true ∩ pred| / |true|
        f1 = 2 precision recall / (precision + recall)

    Any 0/0 is reported as 0 (seqeval's ``zero_division`` default, without its warning). Matches
    ``seqeval.metrics.{precision,recall,f1}_score`` with default arguments.
    """
    if len(true_tags) != len(pred_tags):
        raise ValueError(f"{len(true_tags)} true sentences but {len(pred_tags)} predicted")
    for i, (t, p) in enumerate(zip(true_tags, pred_tags, strict=True)):
        if len(t) != len(p):
            raise ValueError(f"sentence {i}: {len(t)} true tags but {len(p)} predicted tags")
    true = entity_spans(_flatten_sentences(true_tags))
    pred = entity_spans(_flatten_sentences(pred_tags))
    correct = len(true & pred)
    precision = correct / len(pred) if pred else 0.0
    recall = correct / len(true) if true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD v1.1 normalisation: lowercase, drop punctuation, drop articles, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(
    preds: Sequence[str], refs: Sequence[str | Sequence[str]], normalize: bool = True
) -> float:
    """Fraction of predictions equal to their reference: ``mean(norm(pred_i) == norm(ref_i))``.

    A reference may also be a list of acceptable answers (SQuAD); then a prediction matching any
    of them counts. With ``normalize=False`` strings are compared as they are.
    """
    if len(preds) != len(refs):
        raise ValueError(f"preds and refs differ in length: {len(preds)} vs {len(refs)}")
    if not preds:
        raise ValueError("no examples to score (preds and refs are empty)")
    norm = normalize_answer if normalize else (lambda s: s)
    hits = 0
    for pred, ref in zip(preds, refs, strict=True):
        answers = [ref] if isinstance(ref, str) else list(ref)
        hits += norm(pred) in {norm(a) for a in answers}
    return hits / len(preds)


def perplexity(mean_nll: float) -> float:
    """``exp(mean_nll)``, with ``mean_nll`` the mean per-token negative log-likelihood in nats.

    Returns ``inf`` instead of overflowing when ``mean_nll > log(float max) ≈ 709.78``.
    """
    mean_nll = float(mean_nll)
    if mean_nll > _MAX_EXP_ARG:
        return math.inf
    return math.exp(mean_nll)  # nan stays nan


METRICS = Registry("metric")
METRICS.register("accuracy", accuracy, "fraction of exact label matches")
METRICS.register("macro_f1", macro_f1, "unweighted mean of per-class F1")
METRICS.register("entity_f1", entity_f1, "micro entity precision/recall/F1 (seqeval default)")
METRICS.register("exact_match", exact_match, "SQuAD-normalised exact string match")
METRICS.register("perplexity", perplexity, "exp(mean token negative log-likelihood)")


def _label_names(id2label: Mapping[Any, str] | Sequence[str]) -> dict[int, str]:
    if isinstance(id2label, Mapping):
        return {int(k): v for k, v in id2label.items()}  # JSON-loaded configs have str keys
    return dict(enumerate(id2label))


def token_metrics(
    preds: Sequence[Sequence[int]],
    labels: Sequence[Sequence[int]],
    id2label: Mapping[Any, str] | Sequence[str] | None,
) -> dict[str, float]:
    """Token classification: per-sentence label ids (-100 positions removed) -> entity
    ``precision``, ``recall``, ``f1`` over the IOB tags ``id2label`` names, and token ``accuracy``."""
    if id2label is None:
        raise ValueError("token_classification metrics need id2label to turn ids into IOB tags")
    names = _label_names(id2label)

    def to_tags(rows: Sequence[Sequence[int]], what: str) -> list[list[str]]:
        try:
            return [[names[int(i)] for i in row] for row in rows]
        except KeyError as err:
            raise ValueError(
                f"{what} contain label id {err.args[0]} missing from id2label"
            ) from None

    true_tags, pred_tags = to_tags(labels, "labels"), to_tags(preds, "preds")
    scores = entity_f1(true_tags, pred_tags)  # also checks the sentence lengths agree
    flat_pred = [i for row in preds for i in row]
    flat_true = [i for row in labels for i in row]
    scores["accuracy"] = accuracy(flat_pred, flat_true) if flat_true else 0.0
    return scores


def classification_metrics(preds: Any, labels: Any) -> dict[str, float]:
    """Sequence classification: ``preds`` are label ids ``(N,)`` or logits ``(N, C)`` (argmax is
    taken), ``labels`` ids ``(N,)`` -> ``accuracy``, ``macro_f1`` (over ``C`` classes when logits
    are given, else over the classes seen)."""
    p = np.asarray(preds)
    num_labels = None
    if p.ndim == 2:  # logits (N, C)
        num_labels = p.shape[1]
        p = p.argmax(axis=-1)
    return {"accuracy": accuracy(p, labels), "macro_f1": macro_f1(p, labels, num_labels)}


def confusion_matrix(
    preds: Sequence[int], labels: Sequence[int], num_labels: int
) -> list[list[int]]:
    """``m[i][j]`` = how many examples of gold label id ``i`` were predicted as ``j``
    (rows: gold, columns: predicted; every row sums to that label's support)."""
    m = [[0] * num_labels for _ in range(num_labels)]
    for p, y in zip(preds, labels, strict=True):
        m[int(y)][int(p)] += 1
    return m


def generation_metrics(
    preds: Any, labels: Any, mean_nll: float | None, task: str = "generation"
) -> dict[str, float]:
    """Generative tasks: ``loss`` (= ``mean_nll``) and ``perplexity``; plus ``exact_match`` when
    ``preds`` are generated strings and ``labels`` their references."""
    out: dict[str, float] = {}
    if mean_nll is not None:
        out["loss"] = float(mean_nll)
        out["perplexity"] = perplexity(mean_nll)
    if preds is not None and len(preds) and all(isinstance(s, str) for s in preds):
        out["exact_match"] = exact_match(preds, labels)
    if not out:
        raise ValueError(f"{task} metrics need mean_nll and/or generated string preds")
    return out


def compute_metrics(
    task: str,
    *,
    preds: Any = None,
    labels: Any = None,
    id2label: Mapping[Any, str] | Sequence[str] | None = None,
    mean_nll: float | None = None,
) -> dict[str, float]:
    """The standard metrics of task kind ``task`` (its ``metrics`` in the task table,
    :data:`tunesmith.registry.TASKS`), as a flat ``name -> value`` dict.

    * ``sequence_classification``: :func:`classification_metrics`.
    * ``token_classification``: ``preds`` / ``labels`` are per-sentence lists of label ids with the
      ``-100`` positions already removed; ``id2label`` (dict or list) maps ids to IOB tags ->
      entity ``precision``, ``recall``, ``f1`` and token ``accuracy`` (:func:`token_metrics`).
    * ``causal_lm`` / ``seq2seq``: :func:`generation_metrics`.
    """
    return TASKS.get(task, "task").metrics(preds, labels, id2label, mean_nll)


LOWER_IS_BETTER = frozenset({"loss", "perplexity"})
"""Metrics where a smaller value is better (checkpoint selection, averaging across tasks)."""


def greater_is_better(metric: str) -> bool:
    """The direction of ``metric``: True unless it is a loss-like metric (:data:`LOWER_IS_BETTER`)."""
    return metric not in LOWER_IS_BETTER
