"""Universal Logit Distillation (ULD): a teacher whose tokenizer differs from the student's.

Boizard et al. 2024, "Towards Cross-Tokenizer Distillation: the Universal Logit Distillation Loss
for LLMs" (arXiv 2402.12030): the two next-token distributions live on different vocabularies, so
ULD compares them up to a permutation. Per aligned response position, both probability vectors
are sorted in decreasing order, the shorter one is padded with zeros to the longer vocabulary, and
the loss is the L1 distance between the sorted vectors (the paper's closed form of the
Wasserstein-1 distance under a uniform cost). Positions are aligned by truncating both responses
to the shorter one (the paper's choice); the loss is averaged over the aligned positions of each
example, then over the examples.

What we follow: TRL's ``ULDLoss`` (``trl/experimental/gold/gold_trainer.py``, the plain
"sort all probabilities" path with ``use_extended_uld`` and the hybrid loss off): per-example
softmax at separate student / teacher temperatures, truncation to ``min(len_s, len_t)``, sort,
zero-pad, ``l1(reduction="sum") / aligned length``, mean over the batch; and GOLD's
``build_teacher_inputs_from_texts`` for the teacher's inputs: the student's prompt and response are
decoded to text and re-tokenised with the teacher's tokenizer (prompt with its special tokens,
response without, the teacher's eos appended), prompt positions labelled -100
(:func:`teacher_batch`). One difference: our positions are the shifted next-token predictions
(``logits[:, :-1]`` where ``labels[:, 1:] != -100``), as every LM loss in tunesmith.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from tunesmith.distill.losses import lm_token_mask

__all__ = ["teacher_batch", "uld_loss", "uld_rows"]

IGNORE_INDEX = -100


def uld_rows(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    student_temperature: float = 1.0,
    teacher_temperature: float = 1.0,
) -> torch.Tensor:
    """ULD per aligned row: student (N, V_s), teacher (N, V_t) logits -> (N,) L1 distance between
    the sorted probability vectors, the shorter zero-padded. Vocabulary sizes may differ."""
    if student_logits.shape[0] != teacher_logits.shape[0]:
        raise ValueError(
            f"uld_rows needs aligned rows: {student_logits.shape[0]} student vs "
            f"{teacher_logits.shape[0]} teacher positions"
        )
    s = F.softmax(student_logits.float() / student_temperature, -1).sort(-1, descending=True)
    t = F.softmax(teacher_logits.detach().float() / teacher_temperature, -1)
    t = t.sort(-1, descending=True).values
    s = s.values
    width = max(s.shape[-1], t.shape[-1])
    s, t = F.pad(s, (0, width - s.shape[-1])), F.pad(t, (0, width - t.shape[-1]))
    return (s - t).abs().sum(-1)


def uld_loss(
    student_logits: torch.Tensor,
    student_labels: torch.Tensor,
    teacher_logits: torch.Tensor,
    teacher_labels: torch.Tensor,
    student_temperature: float = 1.0,
    teacher_temperature: float = 1.0,
) -> torch.Tensor:
    """ULD of a batch: student (B, T_s, V_s) logits with labels (B, T_s), teacher (B, T_t, V_t)
    with labels (B, T_t) (prompt and padding -100). Per example, the trained next-token positions
    of each side, truncated to the shorter; mean over positions, then over examples that have any
    (0, in the graph, when none has)."""
    s_mask, t_mask = lm_token_mask(student_labels), lm_token_mask(teacher_labels)
    per_example = []
    for b in range(student_logits.shape[0]):
        s_rows = student_logits[b, :-1][s_mask[b]]
        t_rows = teacher_logits[b, :-1][t_mask[b]]
        n = min(s_rows.shape[0], t_rows.shape[0])
        if n:
            rows = uld_rows(s_rows[:n], t_rows[:n], student_temperature, teacher_temperature)
            per_example.append(rows.mean())
    if not per_example:
        return student_logits.sum() * 0.0
    return torch.stack(per_example).mean()


def _texts(ids: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor, tokenizer: Any):
    """(prompt text, response text, response ends with eos) of one student example."""
    keep = mask.bool()
    prompt = ids[keep & (labels == IGNORE_INDEX)].tolist()
    response = ids[keep & (labels != IGNORE_INDEX)].tolist()
    eos = tokenizer.eos_token_id
    ends = bool(response) and eos is not None and response[-1] == eos
    decode = lambda x: tokenizer.decode(x, skip_special_tokens=True)  # noqa: E731
    return decode(prompt), decode(response), ends


def teacher_batch(
    batch: Mapping[str, torch.Tensor], student_tokenizer: Any, teacher_tokenizer: Any
) -> dict[str, torch.Tensor]:
    """The student's batch re-tokenised for the teacher: input_ids, attention_mask, labels
    (right padded, prompt -100), on the batch's device (module doc)."""
    ids, labels = batch["input_ids"], batch["labels"]
    mask = batch.get("attention_mask", torch.ones_like(ids))
    tok = teacher_tokenizer
    rows, label_rows = [], []
    for b in range(ids.shape[0]):
        prompt, response, ends = _texts(
            ids[b].cpu(), labels[b].cpu(), mask[b].cpu(), student_tokenizer
        )
        p = tok(prompt, add_special_tokens=True)["input_ids"] if prompt else []
        if not p and tok.bos_token_id is not None:
            p = [tok.bos_token_id]
        if p and tok.eos_token_id is not None and p[-1] == tok.eos_token_id:
            p = p[:-1]  # GOLD: the prompt must not end the sequence
        r = tok(response, add_special_tokens=False)["input_ids"] if response else []
        if ends and tok.eos_token_id is not None:
            r = [*r, tok.eos_token_id]
        rows.append(p + r)
        label_rows.append([IGNORE_INDEX] * len(p) + r)
    length = max(max(len(r) for r in rows), 2)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    out_ids = torch.full((len(rows), length), pad, dtype=torch.long)
    out_labels = torch.full((len(rows), length), IGNORE_INDEX, dtype=torch.long)
    out_mask = torch.zeros((len(rows), length), dtype=torch.long)
    for b, (r, lab) in enumerate(zip(rows, label_rows, strict=True)):
        out_ids[b, : len(r)] = torch.tensor(r, dtype=torch.long)
        out_labels[b, : len(r)] = torch.tensor(lab, dtype=torch.long)
        out_mask[b, : len(r)] = 1
    device = ids.device
    return {"input_ids": out_ids.to(device), "attention_mask": out_mask.to(device),
            "labels": out_labels.to(device)}  # fmt: skip
