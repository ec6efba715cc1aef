"""Sequence classification: one label per text (or text pair), from a pooled representation."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from transformers import AutoModelForSequenceClassification

from tunesmith.config import DataConfig
from tunesmith.data.encode import encode_classification
from tunesmith.metrics import classification_metrics
from tunesmith.registry import TASKS
from tunesmith.tasks.base import TaskKind


def sequence_classification_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy. logits (B, C), labels (B,) int."""
    return F.cross_entropy(logits.float(), labels)


def _encode(cfg: DataConfig, records, tokenizer, vocab, where: str) -> list[dict]:
    return encode_classification(
        records,
        tokenizer,
        vocab,
        text_key=cfg.text_key,
        text_pair_key=cfg.text_pair_key,
        label_key=cfg.label_key,
        max_length=cfg.max_length,
        where=where,
    )


def _metrics(preds: Any, labels: Any, id2label: Any, mean_nll: float | None) -> dict[str, float]:
    return classification_metrics(preds, labels)


SEQUENCE_CLASSIFICATION = TaskKind(
    name="sequence_classification",
    help="one label per text (or text pair) from a pooled representation",
    auto_class=AutoModelForSequenceClassification,
    model_hint="use an encoder such as 'minilm' or a decoder such as 'smollm2'",
    encode=_encode,
    loss=sequence_classification_loss,
    metrics=_metrics,
    default_metric="accuracy",
    label_key=lambda cfg: cfg.label_key,
    teacher_cache=True,
)
TASKS.register(SEQUENCE_CLASSIFICATION.name, SEQUENCE_CLASSIFICATION, SEQUENCE_CLASSIFICATION.help)
