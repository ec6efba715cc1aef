"""Sequence-level KD (Kim & Rush 2016) and the sampling step of on-policy GKD (Agarwal et al. 2024).

Sequence-level KD: the teacher answers every training prompt (greedy), and the student is
fine-tuned on those answers as ordinary causal-LM data — only the teacher's *text* is needed, so
teacher and student may even use different tokenizers. :func:`generate_targets` returns records
in the same format as the input (the response field replaced), ready for the data pipeline.

On-policy: :func:`generate_completions` samples continuations of a batch's prompts from a model
and returns a training batch (input_ids, attention_mask, position_ids, labels) whose labels cover
only the generated tokens up to and including the first EOS. The ``gkd`` objective term uses it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from tunesmith.data.lmencode import build_prompt, prompt_adds_special_tokens

__all__ = ["generate_completions", "generate_targets", "left_pad", "prompts_from_batch"]

IGNORE_INDEX = -100


def prompts_from_batch(batch: dict[str, torch.Tensor]) -> list[list[int]]:
    """Prompt token ids of each causal-LM example: the real tokens before its first trained label.

    batch: ``input_ids`` (B, T), ``attention_mask`` (B, T), ``labels`` (B, T) (right padded, labels
    aligned with input_ids as :func:`tunesmith.data.lmencode.encode_causal_lm` makes them).
    """
    out = []
    for ids, mask, labels in zip(
        batch["input_ids"].tolist(),
        batch["attention_mask"].tolist(),
        batch["labels"].tolist(),
        strict=True,
    ):
        real = [i for i, m in zip(ids, mask, strict=True) if m]
        trained = [t for t, lab in enumerate(labels) if lab != IGNORE_INDEX]
        out.append(real[: trained[0]] if trained else real)
    return out


def left_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad token lists for batched generation -> (input_ids (B, P), attention_mask (B, P))."""
    length = max(len(r) for r in rows)
    ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for i, r in enumerate(rows):
        if r:
            ids[i, length - len(r) :] = torch.as_tensor(list(r), dtype=torch.long)
            mask[i, length - len(r) :] = 1
    return ids, mask


def _ids_list(value: Any) -> list[int]:
    if value is None:
        return []
    return [int(v) for v in (value if isinstance(value, list | tuple) else [value])]


@torch.no_grad()
def generate_completions(
    model: nn.Module,
    prompts: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    pad_token_id: int,
    eos_token_id: int | list[int] | None,
    do_sample: bool = True,
    temperature: float = 1.0,
) -> dict[str, torch.Tensor]:
    """Continue each prompt with ``model.generate``; return a causal-LM training batch.

    Output (all (B, P + N), on the model's device): ``input_ids``; ``attention_mask`` (1 on the
    real prompt tokens and on generated tokens up to and including the first EOS);
    ``position_ids`` (counted over the real tokens, as generation did: prompts are left padded);
    ``labels`` (the generated tokens up to the first EOS, -100 elsewhere). The model is put in eval
    mode while generating and restored afterwards.
    """
    device = next(model.parameters()).device
    ids, mask = left_pad(prompts, pad_token_id)
    ids, mask = ids.to(device), mask.to(device)
    was_training = model.training
    model.eval()
    try:
        kwargs: dict[str, Any] = {"do_sample": do_sample}
        if do_sample:
            kwargs |= {"temperature": temperature, "top_k": 0, "top_p": 1.0}
        seqs = model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=max_new_tokens,
            pad_token_id=pad_token_id,
            eos_token_id=eos_token_id,
            **kwargs,
        )
    finally:
        model.train(was_training)
    new = seqs[:, ids.shape[1] :]
    keep = torch.ones_like(new, dtype=torch.bool)
    stops = _ids_list(eos_token_id)
    if stops:
        is_eos = torch.isin(new, torch.tensor(stops, device=device))
        after_eos = (is_eos.cumsum(-1) - is_eos.long()) > 0  # strictly after the first EOS
        keep = ~after_eos
    full_mask = torch.cat([mask, keep.long()], dim=1)
    labels = torch.cat(
        [torch.full_like(ids, IGNORE_INDEX), new.masked_fill(~keep, IGNORE_INDEX)], 1
    )
    position_ids = (full_mask.cumsum(-1) - 1).clamp_min(0)
    return {
        "input_ids": seqs,
        "attention_mask": full_mask,
        "position_ids": position_ids,
        "labels": labels,
    }


@torch.no_grad()
def generate_targets(
    teacher: nn.Module,
    tokenizer: Any,
    records: Sequence[dict[str, Any]],
    *,
    template: str = "chat",
    prompt_key: str | None = None,
    system: str | None = None,
    response_key: str = "output",
    max_new_tokens: int = 128,
    batch_size: int = 8,
) -> list[dict[str, Any]]:
    """Sequence-level KD data: each record with ``response_key`` set to the teacher's greedy answer.

    Prompts are built exactly as :func:`tunesmith.data.lmencode.encode_causal_lm` builds them
    (same ``template``, ``prompt_key`` and ``system``), so the returned records train the student
    with the recipe's usual causal-LM data settings.
    """
    add_special = prompt_adds_special_tokens(template)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out: list[dict[str, Any]] = []
    for start in range(0, len(records), batch_size):
        chunk = records[start : start + batch_size]
        texts = [build_prompt(r, tokenizer, template, prompt_key, system) for r in chunk]
        prompts = [tokenizer(t, add_special_tokens=add_special)["input_ids"] for t in texts]
        batch = generate_completions(
            teacher,
            prompts,
            max_new_tokens=max_new_tokens,
            pad_token_id=pad,
            eos_token_id=tokenizer.eos_token_id,
            do_sample=False,
        )
        width = batch["input_ids"].shape[1] - max(len(p) for p in prompts)
        for rec, seq, keep in zip(
            chunk, batch["input_ids"][:, -width:], batch["attention_mask"][:, -width:], strict=True
        ):
            tokens = seq[keep.bool()].tolist() if width else []
            text = tokenizer.decode(tokens, skip_special_tokens=True).strip()
            out.append(dict(rec) | {response_key: text})
    return out
