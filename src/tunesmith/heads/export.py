"""Export one task of a :class:`~tunesmith.heads.multihead.MultiHeadModel` as a plain
single-task transformers model (T5 section 3.7: multi-task training, then per-task fine-tuning)."""

from __future__ import annotations

import copy
import os
from typing import Any

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

from tunesmith.errors import ModelError
from tunesmith.heads.multihead import HeadSpec, MultiHeadModel
from tunesmith.tasks import task_kind

__all__ = ["export_task"]


@torch.no_grad()
def export_task(
    model: MultiHeadModel,
    task: str,
    path: str | os.PathLike[str] | None = None,
    tokenizer: Any = None,
) -> PreTrainedModel:
    """The backbone + ``task``'s head as a plain single-task transformers model.

    Builds ``AutoModelFor{Sequence,Token}Classification`` from the backbone config with the task's
    labels (``id2label``), copies the backbone into its base model and the head's ``classifier``,
    then checks on a probe input (eval mode) that its logits equal the multi-head model's.
    This holds for BERT-like encoders (sequence heads with ``pooling: pooler``; any token head);
    otherwise the HF head is shaped differently and a :class:`ModelError` says so. With ``path``,
    saves the model (and ``tokenizer``) there as a normal HF folder usable as ``model:``.
    """
    spec = model._spec(task)
    auto = task_kind(spec.kind).auto_class
    config = copy.deepcopy(model.config)
    config.id2label = dict(enumerate(spec.labels))
    config.label2id = {label: i for i, label in enumerate(spec.labels)}
    config.architectures = None
    if type(config) not in auto._model_mapping:
        raise ModelError(f"transformers has no {spec.kind} head for {config.model_type!r}")
    with torch.random.fork_rng(devices=[]):  # everything that matters is overwritten
        hf = auto.from_config(config)
    p = next(model.parameters())
    hf.to(device=p.device, dtype=p.dtype)
    base = hf.base_model
    missing, unexpected = base.load_state_dict(model.backbone.state_dict(), strict=False)
    head = getattr(hf, "classifier", None)
    unmatched = missing or [k for k in unexpected if not k.startswith("pooler.")]
    if unmatched or not isinstance(head, nn.Linear):
        raise ModelError(_export_hint(config, task, spec, unmatched))
    head.load_state_dict(model.heads[task].classifier.state_dict())
    if not _same_logits(model, hf, task):
        raise ModelError(_export_hint(config, task, spec, []))
    if path is not None:
        hf.save_pretrained(str(path), safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(str(path))
    return hf


def _same_logits(model: MultiHeadModel, hf: PreTrainedModel, task: str) -> bool:
    modes = model.training, hf.training
    model.eval()
    hf.eval()
    vocab = int(getattr(model.config, "vocab_size", 8))
    ids = (torch.arange(3, 13) % vocab).unsqueeze(0).to(next(hf.parameters()).device)
    mask = torch.ones_like(ids)
    a = model(input_ids=ids, attention_mask=mask, task=task).logits
    b = hf(input_ids=ids, attention_mask=mask).logits
    model.train(modes[0])
    hf.train(modes[1])
    return a.shape == b.shape and torch.allclose(a, b, atol=1e-5, rtol=1e-4)


def _export_hint(config: PretrainedConfig, task: str, spec: HeadSpec, keys: list[str]) -> str:
    why = f"backbone weights {keys[:3]} have no place in it" if keys else "its logits differ"
    return (
        f"cannot export task {task!r} as a transformers {spec.kind} model for "
        f"{config.model_type!r}: {why}. transformers' head for this architecture is not "
        f"dropout + Linear on the {'pooler' if spec.pooling == 'pooler' else spec.pooling or 'token'}"
        " output; export works for BERT-like encoders (sequence heads with pooling: pooler, "
        "any token head). Keep using the multi-head folder instead"
    )
