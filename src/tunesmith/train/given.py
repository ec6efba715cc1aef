"""Objects passed in from Python (a model, a tokenizer, datasets) in place of what the recipe
would load, and the checks that a given model fits the run as a loaded one would.

A given model goes through the same gates as one the recipe names: it must have the task's head
(the task kind's ``AutoModelFor...`` class), a classification head sized for the data's labels,
input embeddings covering the tokenizer, and its weights digest is part of the run's fingerprint
(:mod:`tunesmith.train.runcheck`), so resuming with other weights is refused.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from tunesmith.config import Recipe
from tunesmith.data.labels import LabelVocab
from tunesmith.errors import ConfigError, ModelError
from tunesmith.fingerprint import weights_digest
from tunesmith.models import align_pad_token, load_tokenizer, resolve_model
from tunesmith.tasks import task_kind

__all__ = [
    "NOTHING_GIVEN",
    "Given",
    "check_given_model",
    "checkpoint_folder",
    "remember_trained",
    "run_tokenizer",
    "starting_digest",
]

# model object -> (digest when a run started from it, digest when that run returned): a given
# model trains in place, so resuming with the same untouched object must count as the same start
_TRAINED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class Given:
    """What the caller passed in: each one replaces what the recipe would load (None: load it)."""

    model: PreTrainedModel | None = None
    tokenizer: PreTrainedTokenizerBase | None = None
    datasets: Any = None  # split -> datasets.Dataset | list[dict], or a DatasetDict


NOTHING_GIVEN = Given()  # every object from the recipe


def run_tokenizer(recipe: Recipe, given: Given) -> PreTrainedTokenizerBase:
    """The given tokenizer, else the recipe model's."""
    if given.tokenizer is None:
        options = recipe.model_options
        return load_tokenizer(
            recipe.model_source,
            revision=options.revision,
            trust_remote_code=options.trust_remote_code,
        )
    if not isinstance(given.tokenizer, PreTrainedTokenizerBase):
        raise ConfigError(
            "tokenizer",
            f"expected a transformers tokenizer, got {type(given.tokenizer).__name__}",
            "pass AutoTokenizer.from_pretrained(...)",
        )
    return given.tokenizer


def checkpoint_folder(recipe: Recipe, given: Given) -> str | None:
    """The folder the model's weights came from (sentence-transformers pooling is read there);
    for a given model, its ``name_or_path`` when that is a local folder."""
    if given.model is None:
        return resolve_model(recipe.model_source)
    source = getattr(given.model, "name_or_path", "") or ""
    return source if source and Path(source).is_dir() else None


def check_given_model(
    recipe: Recipe,
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    vocab: LabelVocab | None,
) -> None:
    """Refuse a given model that cannot train this recipe; name its labels after the data's."""
    if not isinstance(model, PreTrainedModel):
        raise ConfigError(
            "model",
            f"expected a transformers PreTrainedModel, got {type(model).__name__}",
            "pass AutoModelFor<Task>.from_pretrained(...)",
        )
    if recipe.tasks:
        raise ConfigError(
            "model", "a model object can replace the model of a single-task recipe only"
        )
    if recipe.student is not None and recipe.student.from_teacher is not None:
        raise ConfigError(
            "model", "student.from_teacher builds the model from the teacher: give no model"
        )
    check_head(recipe.task, model)
    check_embeddings(model, tokenizer)
    if vocab is not None:
        name_labels(model, vocab)
    align_pad_token(model, tokenizer)


def check_head(task: str, model: PreTrainedModel) -> None:
    """The model is the task kind's head class for its config (what ``AutoModelFor...`` builds)."""
    kind = task_kind(task)
    mapping = kind.auto_class._model_mapping
    expected = mapping[type(model.config)] if type(model.config) in mapping else None
    classes = expected if isinstance(expected, tuple) else (expected,)
    if expected is None or not isinstance(model, tuple(c for c in classes if c)):
        want = kind.auto_class.__name__
        raise ModelError(
            f"the model object is a {type(model).__name__}, which has no head for task "
            f"{task!r} (hint: pass {want}.from_pretrained(...); {kind.model_hint})"
        )


def check_embeddings(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    """Every token id the tokenizer can produce has an embedding row."""
    rows = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > rows:
        raise ModelError(
            f"the tokenizer has {len(tokenizer)} tokens but the model embeds only {rows} "
            "(hint: pass the model's own tokenizer, or resize the model's embeddings with "
            "model.resize_token_embeddings(len(tokenizer)))"
        )


def name_labels(model: PreTrainedModel, vocab: LabelVocab) -> None:
    """A classification head must have one output per label of the data; its id2label becomes
    the data's (label ids follow the data's label vocabulary, as for a loaded model)."""
    if model.config.num_labels != len(vocab):
        raise ModelError(
            f"the model object's head has {model.config.num_labels} labels but the data has "
            f"{len(vocab)} ({', '.join(map(str, vocab.named_id2label.values()))}) (hint: load "
            f"it with num_labels={len(vocab)}, or let the recipe load the model)"
        )
    model.config.id2label = dict(vocab.named_id2label)
    model.config.label2id = dict(vocab.named_label2id)


def starting_digest(model: nn.Module) -> str:
    """The run fingerprint's ``model``: the weights digest, or, for a model object a run trained
    in place and nobody changed since, the digest it had when that run started."""
    digest = weights_digest(model)
    start, end = _TRAINED.get(model, (None, None))
    return start if digest == end else digest


def remember_trained(model: nn.Module, start: str) -> None:
    """After a run trained ``model`` in place (see :func:`starting_digest`)."""
    _TRAINED[model] = (start, weights_digest(model))
