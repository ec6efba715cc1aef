"""Token classification: one tag per word (NER, tagging), placed on the word's first sub-token."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from transformers import AutoModelForTokenClassification

from tunesmith.config import DataConfig
from tunesmith.data.encode import IGNORE_INDEX, encode_token_classification
from tunesmith.metrics import token_metrics
from tunesmith.registry import TASKS
from tunesmith.tasks.base import TaskKind


def token_classification_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over labelled tokens. logits (B, T, C), labels (B, T) with -100 ignored."""
    return F.cross_entropy(
        logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX
    )


def _encode(cfg: DataConfig, records, tokenizer, vocab, where: str) -> list[dict]:
    return encode_token_classification(
        records,
        tokenizer,
        vocab,
        tokens_key=cfg.tokens_key,
        tags_key=cfg.tags_key,
        max_length=cfg.max_length,
        where=where,
    )


def _metrics(preds: Any, labels: Any, id2label: Any, mean_nll: float | None) -> dict[str, float]:
    return token_metrics(preds, labels, id2label)


TOKEN_CLASSIFICATION = TaskKind(
    name="token_classification",
    help="one label per token (NER, tagging)",
    auto_class=AutoModelForTokenClassification,
    model_hint="use an encoder such as 'minilm'",
    encode=_encode,
    loss=token_classification_loss,
    metrics=_metrics,
    default_metric="f1",
    label_key=lambda cfg: cfg.tags_key,
    per_token=True,
    teacher_cache=True,
)
TASKS.register(TOKEN_CLASSIFICATION.name, TOKEN_CLASSIFICATION, TOKEN_CLASSIFICATION.help)
