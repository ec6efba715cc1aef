"""The run's mode: what one run trains on, how it routes a batch and how it is evaluated.

The loop (:mod:`tunesmith.train.loop`) is the same for every kind of run; what differs is behind
:class:`RunMode`, one class per mode:

* :class:`~tunesmith.train.modes.single.SingleTask` — one dataset, one model (``data:``);
* :class:`~tunesmith.train.modes.mixture.Mixture` — several tasks, a shared encoder with one head
  per task, batches drawn by the mixing rates (``task: multi_head``);
* :class:`~tunesmith.train.modes.text_to_text.TextToText` — several tasks written as text for one
  generative model, evaluated by scoring each task's label words (``task: causal_lm | seq2seq``
  with ``tasks:``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from accelerate import Accelerator
from torch import nn
from transformers import PreTrainedTokenizerBase

from tunesmith.adapters import load_model_or_adapter
from tunesmith.config import Recipe
from tunesmith.data.collate import Collator
from tunesmith.data.labels import LabelVocab
from tunesmith.models import align_pad_token
from tunesmith.precision import DTYPES
from tunesmith.train.evaluation import Evaluation

Plan = list[list[list[int]]]
"""One epoch of this process's optimiser steps: steps -> micro-batches -> example indices."""

Labels = list[str] | dict[str, list[str]] | None
"""A run's label list; ``{task: labels}`` for several tasks; None for generative tasks."""


class RunMode(ABC):
    """What the loop asks of a run: its training data and plan, where a batch goes, evaluation.

    Attributes set by every mode: ``recipe``; ``train_examples`` (the encoded training list the
    plan indexes); ``steps_per_epoch``; ``default_metric`` (picks the best checkpoint when
    ``train.metric`` is not set); ``label_vocab`` (the label set of the run's one head, which a
    teacher's head must match; None when there is no single head).
    """

    recipe: Recipe
    tokenizer: PreTrainedTokenizerBase
    accelerator: Accelerator
    train_examples: list[dict[str, Any]]
    steps_per_epoch: int
    default_metric: str
    label_vocab: LabelVocab | None = None

    @abstractmethod
    def plan(self, epoch: int) -> Plan:
        """This process's optimiser steps for ``epoch``. A pure function of (seed, epoch), so a
        resumed run rebuilds the same plan and skips the steps already done."""

    @abstractmethod
    def route(self, example: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """(task kind, extra forward kwargs) of a micro-batch whose first example is ``example``
        (micro-batches are homogeneous): the kind picks the loss and the model inputs, the kwargs
        pick a multi-head model's head."""

    @abstractmethod
    def has(self, split: str) -> bool:
        """Whether there are ``split`` ("dev", "test") examples to evaluate."""

    @abstractmethod
    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        """Metrics of ``model`` on ``split`` (every process calls it; every process gets them)."""

    @abstractmethod
    def labels(self) -> Labels:
        """The labels written to ``labels.json`` and ``best/tunesmith.json``."""

    @abstractmethod
    def build_model(self) -> nn.Module:
        """The model to train (when the student is not built from a teacher)."""

    def check_model(self, model: nn.Module) -> None:
        """Raise :class:`~tunesmith.errors.ConfigError` when ``model`` cannot train this data."""
        return None  # every model fits by default

    def finish(self, model: nn.Module, best: Path) -> dict[str, Any]:
        """At the end of training, with the best weights loaded: export what the mode exports
        and return what it adds to ``summary.json``."""
        return {}

    def evaluate_detailed(self, model: nn.Module, split: str) -> Evaluation:
        """:meth:`evaluate` plus what the report shows beyond the metrics (a confusion matrix
        where the mode has one label set); by default the metrics only."""
        return Evaluation(self.evaluate(model, split))

    def split_examples(self, split: str) -> list[dict[str, Any]] | None:
        """The encoded examples of ``split`` when the run has one model input format (a single
        task; used to time models on the same batches), else None."""
        return None

    def eval_collator(self) -> Collator:
        return Collator(pad_token_id=self.tokenizer.pad_token_id)


def load_hf_model(
    recipe: Recipe, tokenizer: PreTrainedTokenizerBase, vocab: LabelVocab | None
) -> nn.Module:
    """A transformers model for ``recipe.task`` (a new head sized by ``vocab`` when given; its
    config's ``id2label`` carries the ``data.label_names`` display names)."""
    kwargs = {}
    if vocab is not None:
        kwargs = dict(
            num_labels=len(vocab), id2label=vocab.named_id2label, label2id=vocab.named_label2id
        )
    options = recipe.model_options
    if recipe.adapter is not None and options.dtype in DTYPES:
        # the base under an adapter is frozen: load it in its dtype (peak memory too); a trained
        # head goes back to fp32 once the optimizer's parameters are known (cast_for_training)
        kwargs["dtype"] = DTYPES[options.dtype]
    model = load_model_or_adapter(
        recipe.model_source,
        recipe.task,
        from_scratch=recipe.from_scratch,
        init_seed=recipe.seed,
        **options.load_options(),
        **kwargs,
    )
    align_pad_token(model, tokenizer)
    return model
