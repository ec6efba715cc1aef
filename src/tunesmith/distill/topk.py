"""Divergences against a teacher known by its top-k log-probs plus a tail bucket (cached teacher).

A cached LM teacher keeps, per token, the log-probs ``lp`` (k,) of its k most likely tokens, their
ids (k,) and ``tail = log(1 - sum(exp(lp)))``, the log of the mass outside them. The teacher is
then the (k + 1)-bucket distribution ``[p_1 .. p_k, p_tail]``; the student is compared in the same
buckets: its log-probs at the teacher's k ids and, as its tail, the logsumexp of its log-probs
outside those ids. So the divergence is exact over the top k and correct in total mass (both sides
sum to 1); with k = V it equals the full-vocabulary divergence of :mod:`tunesmith.distill.losses`
(the tail is empty on both sides), and when the teacher's mass is concentrated on its top k it is
close to it (the student's mass outside the top k is still pushed down, as one bucket).

Temperature: the teacher's buckets are ``log_softmax([lp, tail] / T)``. For the top k this is exact
(dividing log-probs by T and renormalising equals ``softmax(z / T)`` restricted to them); the tail
is tempered as one bucket, which is exact at T = 1 (the default of ``lm_kd``) and an approximation
otherwise. The student's buckets come from its exact ``log_softmax(s / T)``.

Every function takes *rows*: student logits (N, V) and the cached (N, k) ids, (N, k) log-probs,
(N,) tail of the same N token positions, and :func:`topk_tail_rows` returns the per-row
divergence (N,), so a caller can chunk the rows (e.g. a chunked LM head) and sum the chunks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tunesmith.distill.losses import jsd_rows, mean_rows

__all__ = [
    "TAIL_FLOOR",
    "bucket_log_probs",
    "cached_lm_divergence",
    "teacher_tail",
    "topk_forward_kl",
    "topk_jsd",
    "topk_reverse_kl",
    "topk_tail_rows",
]

# log-mass floor of a tail bucket: exp(-80) ~ 1.8e-35 is representable in fp32 and keeps the
# divergences and their gradients finite when a tail is empty (k = V) or underflows.
TAIL_FLOOR = -80.0


def teacher_tail(log_probs: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """log of the mass outside ``ids``: log_probs (N, V) fp32, ids (N, k) -> (N,), floored at
    :data:`TAIL_FLOOR` (computed as a logsumexp over the other tokens, exact even when the top k
    hold almost all the mass, unlike ``log1p(-sum)``)."""
    outside = log_probs.scatter(-1, ids, float("-inf"))
    return torch.logsumexp(outside, dim=-1).clamp_min(TAIL_FLOOR)


def _student_buckets(logits: torch.Tensor, ids: torch.Tensor, temperature: float) -> torch.Tensor:
    """(N, V) student logits -> (N, k + 1) bucket log-probs at temperature T."""
    log_s = F.log_softmax(logits.float() / temperature, dim=-1)
    top = log_s.gather(-1, ids)
    # the finite fill keeps logsumexp's gradient finite when every token is in the top k
    outside = log_s.scatter(-1, ids, torch.finfo(log_s.dtype).min)
    tail = torch.logsumexp(outside, dim=-1).clamp_min(TAIL_FLOOR)
    return torch.cat([top, tail[:, None]], dim=-1)


def bucket_log_probs(
    topk_logprobs: torch.Tensor, tail: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """The teacher's (N, k + 1) bucket log-probs at temperature T (renormalised, so fp16 rounding of
    the stored values cannot change the total mass)."""
    buckets = torch.cat([topk_logprobs.float(), tail.float().clamp_min(TAIL_FLOOR)[:, None]], -1)
    return F.log_softmax(buckets / temperature, dim=-1)


def topk_tail_rows(
    student_logits: torch.Tensor,
    topk_ids: torch.Tensor,
    topk_logprobs: torch.Tensor,
    tail: torch.Tensor,
    beta: float = 0.0,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Per-row divergence (N,) between the student and a top-k + tail teacher (module doc).

    student_logits (N, V); topk_ids (N, k) int; topk_logprobs (N, k) teacher log-probs at T = 1;
    tail (N,) log of the teacher's remaining mass. ``beta`` as in
    :func:`tunesmith.distill.losses.generalized_jsd` (TRL's convention): 0 = forward
    KL(teacher || student), 1 = reverse KL(student || teacher), between = JSD(beta). No T^2.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta}")
    ids = topk_ids.long()
    log_s = _student_buckets(student_logits, ids, temperature)
    log_t = bucket_log_probs(topk_logprobs.detach(), tail.detach(), temperature)
    return jsd_rows(log_s, log_t, beta)


def topk_forward_kl(student_logits, topk_ids, topk_logprobs, tail, temperature=1.0):
    """Mean over rows of KL(teacher || student) in top-k + tail buckets."""
    return mean_rows(
        topk_tail_rows(student_logits, topk_ids, topk_logprobs, tail, 0.0, temperature)
    )


def topk_reverse_kl(student_logits, topk_ids, topk_logprobs, tail, temperature=1.0):
    """Mean over rows of KL(student || teacher) in top-k + tail buckets."""
    return mean_rows(
        topk_tail_rows(student_logits, topk_ids, topk_logprobs, tail, 1.0, temperature)
    )


def topk_jsd(student_logits, topk_ids, topk_logprobs, tail, beta=0.5, temperature=1.0):
    """Mean over rows of the generalized JSD(beta) in top-k + tail buckets."""
    return mean_rows(
        topk_tail_rows(student_logits, topk_ids, topk_logprobs, tail, beta, temperature)
    )


def cached_lm_divergence(
    student: torch.Tensor, batch, mask: torch.Tensor, beta: float, temperature: float
) -> torch.Tensor:
    """Mean over the kept rows of :func:`topk_tail_rows` (no T^2) for a causal LM batch carrying
    the cached keys (``teacher_topk_ids`` / ``_logprobs`` / ``_tail``, (B, T, ...)):
    ``student`` (B, T-1, V) next-token logits, ``mask`` (B, T-1); the keys are shifted alike."""
    keep = mask.bool()
    rows = topk_tail_rows(
        student[keep],
        batch["teacher_topk_ids"][:, :-1][keep],
        batch["teacher_topk_logprobs"][:, :-1][keep],
        batch["teacher_topk_tail"][:, :-1][keep],
        beta,
        temperature,
    )
    return mean_rows(rows)
