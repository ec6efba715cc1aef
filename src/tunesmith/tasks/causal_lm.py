"""Causal language modelling: prompt -> response (or plain text) with a decoder-only model.

Also the packing check: whether a model keeps packed examples apart (:func:`attends_within_examples`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM

from tunesmith.config import DataConfig
from tunesmith.data.chatencode import encode_lm
from tunesmith.data.chatformats import check_records
from tunesmith.data.encode import IGNORE_INDEX
from tunesmith.data.lmencode import encode_prompt
from tunesmith.metrics import generation_metrics
from tunesmith.registry import TASKS
from tunesmith.tasks.base import TaskKind


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy: position t predicts token t+1. logits (B, T, V), labels (B, T).

    Prompt and padding positions carry -100 in ``labels`` and do not count.
    """
    shift_logits = logits[:, :-1].float()
    shift_labels = labels[:, 1:]
    return F.cross_entropy(
        shift_logits.flatten(0, 1), shift_labels.flatten(), ignore_index=IGNORE_INDEX
    )


def _encode(cfg: DataConfig, records, tokenizer, vocab, where: str) -> list[dict]:
    return encode_lm(
        records,
        tokenizer,
        chat_format=cfg.chat_format,
        template=cfg.template,
        prompt_key=cfg.prompt_key,
        response_key=cfg.response_key,
        text_key=cfg.lm_text_key,
        system=cfg.system,
        mask_prompt=cfg.mask_prompt,
        max_length=cfg.max_length,
        where=where,
    )


def _prompt_ids(cfg: DataConfig, tokenizer: Any, text: str) -> list[int]:
    return encode_prompt(
        text,
        tokenizer,
        template=cfg.template,
        prompt_key=cfg.prompt_key,
        text_key=cfg.lm_text_key or ("text" if cfg.chat_format == "plain" else None),
        system=cfg.system,
    )


def _check(cfg: DataConfig, records, place_of) -> None:
    """Every record fits its split's chat format (conversations well formed), ``file:line``."""
    check_records(records, cfg.chat_format, cfg.prompt_key, cfg.lm_text_key, place_of)


def _metrics(preds: Any, labels: Any, id2label: Any, mean_nll: float | None) -> dict[str, float]:
    return generation_metrics(preds, labels, mean_nll, task="causal_lm")


CAUSAL_LM = TaskKind(
    name="causal_lm",
    help="next-token prediction, decoder-only",
    auto_class=AutoModelForCausalLM,
    model_hint="use a decoder-only model such as 'smollm2'",
    encode=_encode,
    loss=causal_lm_loss,
    metrics=_metrics,
    default_metric="loss",
    per_token=True,
    label_shift=1,
    generative=True,
    packable=True,
    teacher_cache=True,
    prompt_ids=_prompt_ids,
    check_records=_check,
)
TASKS.register(CAUSAL_LM.name, CAUSAL_LM, CAUSAL_LM.help)


def attends_within_examples(model: Any) -> bool:
    """Whether ``model`` keeps packed examples apart: two short sequences packed in one row give
    the same logits as each alone. Checked once before training with packing (a model whose
    attention ignores position resets would silently attend across examples)."""
    vocab = int(model.get_input_embeddings().weight.shape[0])
    g = torch.Generator().manual_seed(0)
    a, b = (torch.randint(0, vocab, (1, n), generator=g) for n in (5, 4))
    device = next(model.parameters()).device
    row = {
        "input_ids": torch.cat([a, b], 1).to(device),
        "position_ids": torch.tensor([[0, 1, 2, 3, 4, 0, 1, 2, 3]], device=device),
    }
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            packed = model(**CAUSAL_LM.model_inputs(row)).logits[0, 5:]
            alone = model(input_ids=b.to(device), use_cache=False).logits[0]
    finally:
        model.train(was_training)
    return bool(torch.allclose(packed.float(), alone.float(), atol=1e-3, rtol=1e-3))
