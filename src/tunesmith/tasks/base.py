"""What a task kind is: one row of the task table (:data:`tunesmith.registry.TASKS`).

Everything the rest of tunesmith needs to know about a kind of task — which transformers head it
loads, how records become token ids, the loss, the model inputs, the metrics, and the few facts
about label layout that evaluation, prediction, the teacher cache and the Fisher estimate branch
on — is one :class:`TaskKind`, written in the kind's own module and registered with one call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from tunesmith.config import DataConfig
from tunesmith.data.encode import IGNORE_INDEX
from tunesmith.data.labels import LabelVocab

__all__ = ["IGNORE_INDEX", "Encoder", "MetricsFn", "TaskKind"]

Encoder = Callable[[DataConfig, Sequence[dict[str, Any]], Any, LabelVocab | None, str], list[dict]]
"""``encode(cfg, records, tokenizer, vocab, where) -> examples`` (see :mod:`tunesmith.data.encode`)."""

MetricsFn = Callable[[Any, Any, Mapping[Any, str] | Sequence[str] | None, float | None], dict]
"""``metrics(preds, labels, id2label, mean_nll) -> {name: value}`` (see :mod:`tunesmith.metrics`)."""

_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass(frozen=True)
class TaskKind:
    """One task kind. ``labels`` below are the ``labels`` an encoder writes into an example."""

    name: str
    help: str  # one line for `tunesmith list`
    auto_class: Any  # the transformers Auto class with this kind's head (AutoModelFor...)
    model_hint: str  # what to do when a model has no such head (ModelError hint)
    encode: Encoder  # records -> examples with input_ids, attention_mask (+ labels)
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (logits, labels) -> mean loss
    metrics: MetricsFn  # the standard metrics of this kind
    default_metric: str  # metric for best-checkpoint selection when the recipe names none
    label_key: Callable[[DataConfig], str] | None = None
    """The record field a label vocabulary is built on; None: no vocabulary (generative)."""
    per_token: bool = False
    """``labels`` has one entry per position (T,), -100 where no loss is taken; else one int per
    example (the logits are (B, C), one row per example)."""
    label_shift: int = 0
    """The logits at position t score ``labels[t + label_shift]`` (1: next-token prediction)."""
    generative: bool = False
    """The head scores a vocabulary: evaluated by mean NLL (loss, perplexity), predicts by
    generation, and can run several tasks as text-to-text (T5 style)."""
    encoder_decoder: bool = False
    """The model is an encoder-decoder: its forward takes ``labels`` (it builds the decoder inputs
    from them) and what it generates does not repeat the prompt."""
    packable: bool = False
    """Training examples may be packed several to a row (:mod:`tunesmith.data.packing`)."""
    teacher_cache: bool = False
    """A teacher's outputs can be cached (:mod:`tunesmith.distill.cache`): full logits, or top-k
    log-probs for a generative kind."""
    prompt_ids: Callable[[DataConfig, Any, str], list[int]] | None = None
    """Generative kinds: token ids of a prediction input, tokenised as training sources are."""
    check_records: (
        Callable[[DataConfig, Sequence[dict], Callable[[dict, int], str]], None] | None
    ) = None
    """``check(cfg, records, place_of)``: checks one split's records as read, before any model
    loads (``tunesmith validate`` too); ``place_of(record, i)`` names ``file:line``."""

    @property
    def classification(self) -> bool:
        """The head predicts labels from a vocabulary (takes ``num_labels`` / ``id2label``)."""
        return self.label_key is not None

    def label_field(self, cfg: DataConfig) -> str | None:
        """The field to build the label vocabulary on (None: this kind has none)."""
        return None if self.label_key is None else self.label_key(cfg)

    def stratify_field(self, cfg: DataConfig) -> str | None:
        """The field carved splits are stratified on: one label per example, else None."""
        return None if self.per_token else self.label_field(cfg)

    def model_inputs(self, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        """The tensors the model's forward takes (labels only for an ``encoder_decoder``)."""
        if "position_ids" in batch:
            # packed rows: position resets and no mask (and no KV cache, which would hide the
            # resets from transformers' mask builder) -> a block-diagonal causal mask
            return {
                "input_ids": batch["input_ids"],
                "position_ids": batch["position_ids"],
                "use_cache": False,
            }
        keys = (*_INPUTS, "labels") if self.encoder_decoder else _INPUTS
        return {k: batch[k] for k in keys if k in batch}

    def scored_positions(self, labels: Sequence[int] | None, length: int) -> list[int]:
        """Positions t of one example whose logits a loss uses: ``[0]`` for one label per example;
        else every t with ``labels[t + label_shift] != -100`` (all when unlabelled)."""
        if not self.per_token:
            return [0]
        s = self.label_shift
        return [t for t in range(length - s) if labels is None or labels[t + s] != IGNORE_INDEX]
