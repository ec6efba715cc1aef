"""How usable a student made of teacher blocks is before any training: its task loss per choice.

A decoder student made of half its teacher's blocks can start far from usable (SmolLM2 30 -> 15
every other block: held-out loss 15.6 against the teacher's 2.0); which blocks are kept decides
how much training it needs to heal. :func:`initial_loss` scores one model on a few examples;
:func:`compare_layer_choices` builds the student of every choice and scores each, so a recipe (or
a benchmark) can pick the one that starts best. Pure measurement: nothing is trained or saved.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from tunesmith.data.collate import Collator
from tunesmith.distill.student import LAYER_PRESETS, select_layers, student_from_teacher
from tunesmith.distill.student import teacher_depth as depth
from tunesmith.tasks import model_inputs, task_loss

__all__ = ["compare_layer_choices", "initial_loss"]

Choice = str | Sequence[int]


@torch.no_grad()
def initial_loss(
    model: nn.Module,
    examples: Sequence[dict[str, Any]],
    task: str,
    batch_size: int = 8,
    max_examples: int = 64,
) -> float:
    """Mean task loss of ``model`` (eval mode, where its parameters are) over the first
    ``max_examples`` examples, batch by batch weighted by batch size."""
    pad = getattr(model.config, "pad_token_id", None)
    collate = Collator(pad_token_id=pad if pad is not None else 0)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    chosen = list(examples[:max_examples])
    keys = ("input_ids", "attention_mask", "token_type_ids", "labels")
    for start in range(0, len(chosen), batch_size):
        part = [{k: ex[k] for k in keys if k in ex} for ex in chosen[start : start + batch_size]]
        batch = {k: v.to(device) for k, v in collate(part).items()}
        logits = model(**model_inputs(task, batch)).logits
        total += float(task_loss(task, logits.float(), batch["labels"])) * len(part)
        count += len(part)
    model.train(was_training)
    return total / max(count, 1)


def compare_layer_choices(
    teacher: nn.Module,
    examples: Sequence[dict[str, Any]],
    task: str,
    n: int | None = None,
    choices: dict[str, Choice] | None = None,
    max_examples: int = 64,
) -> dict[str, dict[str, Any]]:
    """``{choice: {"layers": [...], "loss": float}}`` for every choice (default: every preset of
    :data:`~tunesmith.distill.student.LAYER_PRESETS` at ``n`` blocks) plus ``"teacher"``.

    Each student is built from ``teacher`` (same device), scored with :func:`initial_loss` and
    dropped before the next is built, so at most one student is alive at a time."""
    choices = choices if choices is not None else dict.fromkeys(LAYER_PRESETS, None)
    L = depth(teacher)
    out: dict[str, dict[str, Any]] = {}
    for name, layers in choices.items():
        spec = name if layers is None else layers
        student = student_from_teacher(teacher, spec, n)
        out[name] = {
            "layers": select_layers(L, spec, n),
            "loss": round(initial_loss(student, examples, task, max_examples=max_examples), 4),
        }
        del student
    t_loss = initial_loss(teacher, examples, task, max_examples=max_examples)
    out["teacher"] = {"layers": list(range(L)), "loss": round(t_loss, 4)}
    return out
