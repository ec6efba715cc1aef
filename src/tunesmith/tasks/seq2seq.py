"""Sequence-to-sequence: source -> target with an encoder-decoder (T5 style)."""

from __future__ import annotations

from typing import Any

import torch
from transformers import AutoModelForSeq2SeqLM

from tunesmith.config import DataConfig
from tunesmith.data.encode import encode_seq2seq
from tunesmith.metrics import generation_metrics
from tunesmith.registry import TASKS
from tunesmith.tasks.base import TaskKind
from tunesmith.tasks.token_classification import token_classification_loss


def seq2seq_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Decoder cross-entropy (the decoder input is already shifted). logits (B, T, V), labels (B, T)."""
    return token_classification_loss(logits, labels)


def _encode(cfg: DataConfig, records, tokenizer, vocab, where: str) -> list[dict]:
    return encode_seq2seq(
        records,
        tokenizer,
        source_key=cfg.source_key,
        target_key=cfg.target_key,
        prefix=cfg.prefix,
        max_source_length=cfg.max_length,
        max_target_length=cfg.max_target_length,
        where=where,
    )


def _prompt_ids(cfg: DataConfig, tokenizer: Any, text: str) -> list[int]:
    # the same call encode_seq2seq makes for a source
    return list(
        tokenizer(cfg.prefix + text, truncation=True, max_length=cfg.max_length)["input_ids"]
    )


def _metrics(preds: Any, labels: Any, id2label: Any, mean_nll: float | None) -> dict[str, float]:
    return generation_metrics(preds, labels, mean_nll, task="seq2seq")


SEQ2SEQ = TaskKind(
    name="seq2seq",
    help="text-to-text with an encoder-decoder",
    auto_class=AutoModelForSeq2SeqLM,
    model_hint="use an encoder-decoder or T5-like model",
    encode=_encode,
    loss=seq2seq_loss,
    metrics=_metrics,
    default_metric="loss",
    per_token=True,
    generative=True,
    encoder_decoder=True,
    prompt_ids=_prompt_ids,
)
TASKS.register(SEQ2SEQ.name, SEQ2SEQ, SEQ2SEQ.help)
