"""Task losses: pure functions of logits and labels (fp32 softmax, ``ignore_index=-100``).

We compute the task loss ourselves instead of relying on each transformers head's built-in loss,
so every architecture gets the same, tested definition (and extra terms can see the logits).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def sequence_classification_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy. logits (B, C), labels (B,) int."""
    return F.cross_entropy(logits.float(), labels)


def token_classification_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over labelled tokens. logits (B, T, C), labels (B, T) with -100 ignored."""
    return F.cross_entropy(
        logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX
    )


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy: position t predicts token t+1. logits (B, T, V), labels (B, T).

    Prompt and padding positions carry -100 in ``labels`` and do not count.
    """
    shift_logits = logits[:, :-1].float()
    shift_labels = labels[:, 1:]
    return F.cross_entropy(
        shift_logits.flatten(0, 1), shift_labels.flatten(), ignore_index=IGNORE_INDEX
    )


def seq2seq_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Decoder cross-entropy (the decoder input is already shifted). logits (B, T, V), labels (B, T)."""
    return token_classification_loss(logits, labels)


TASK_LOSSES = {
    "sequence_classification": sequence_classification_loss,
    "token_classification": token_classification_loss,
    "causal_lm": causal_lm_loss,
    "seq2seq": seq2seq_loss,
}


def model_inputs(task: str, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The tensors a model's forward takes for ``task`` (labels only where the model needs them:
    seq2seq models build their decoder inputs from them)."""
    if "position_ids" in batch:
        # packed rows: position resets and no mask (and no KV cache, which would hide the resets
        # from transformers' mask builder) -> a block-diagonal causal mask, no cross attention
        return {
            "input_ids": batch["input_ids"],
            "position_ids": batch["position_ids"],
            "use_cache": False,
        }
    keys = ["input_ids", "attention_mask", "token_type_ids"]
    if task == "seq2seq":
        keys.append("labels")
    return {k: batch[k] for k in keys if k in batch}


def task_loss(task: str, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return TASK_LOSSES[task](logits, labels)
