"""Distillation losses: pure functions of student and teacher tensors (fp32 softmax, masks).

Conventions shared by every function here:

* Distributions are over the last axis. Logits of any leading shape ``(..., V)`` work; ``mask``
  has the leading shape ``(...)`` and is True where the position counts. The loss is the mean of
  the per-position value over the kept positions ("batchmean" for ``(B, C)`` classification
  logits, "mean over unmasked tokens" for ``(B, T, V)``). An all-False mask gives 0 (in the
  graph, so ``backward`` still works).
* Masked positions are dropped *before* the softmax, so they cost no compute and changing their
  logits cannot change the loss.
* KL direction: ``forward_kl`` is KL(p_teacher || p_student) (mean-seeking, Hinton's KD);
  ``reverse_kl`` is KL(p_student || p_teacher) (mode-seeking, MiniLLM / GKD's beta=1).

Causal LMs: the logits at position t predict token t+1, so the teacher/student logits to compare
are ``logits[:, :-1]`` and their mask is :func:`lm_token_mask` ``(labels)`` =
``labels[:, 1:] != -100`` (prompt and padding excluded) — the same alignment as
:func:`tunesmith.tasks.causal_lm.causal_lm_loss`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

IGNORE_INDEX = -100

__all__ = [
    "attention_loss",
    "forward_kl",
    "generalized_jsd",
    "hidden_state_loss",
    "hinton_kd_loss",
    "lm_token_mask",
    "reverse_kl",
    "sparse_forward_kl",
]


def lm_token_mask(labels: torch.Tensor) -> torch.Tensor:
    """Mask for next-token distributions of a causal LM. labels (B, T) -> (B, T-1) bool.

    Entry ``[b, t]`` says whether the prediction made at position t (``logits[b, t]``, which
    predicts token t+1) is trained, i.e. ``labels[b, t + 1] != -100``. Use it with
    ``logits[:, :-1]``.
    """
    return labels[:, 1:] != IGNORE_INDEX


def _select(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """(..., V) -> (N, V): the kept rows (all rows when ``mask`` is None)."""
    if mask is None:
        return x.reshape(-1, x.shape[-1])
    if mask.shape != x.shape[:-1]:
        raise ValueError(f"mask shape {tuple(mask.shape)} does not match {tuple(x.shape[:-1])}")
    return x[mask.bool()]


def mean_rows(per_row: torch.Tensor) -> torch.Tensor:
    """Mean over rows; 0 (still in the graph) when there are none."""
    return per_row.sum() / max(per_row.numel(), 1)


def kl_rows(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) per row, (N, V) log-probs -> (N,). Terms with p = 0 contribute 0 (no nan)."""
    p = log_p.exp()
    return torch.where(p > 0, p * (log_p - log_q), torch.zeros_like(p)).sum(-1)


def jsd_rows(log_s: torch.Tensor, log_t: torch.Tensor, beta: float) -> torch.Tensor:
    """Generalized JSD(beta) per row of student / teacher log-probs (N, V) -> (N,), with TRL's
    end points: ``beta == 0`` the forward KL(t || s), ``beta == 1`` the reverse KL(s || t)
    (see :func:`generalized_jsd`)."""
    if beta == 0.0:
        return kl_rows(log_t, log_s)
    if beta == 1.0:
        return kl_rows(log_s, log_t)
    # log m = logsumexp(log p_s + log(1 - beta), log p_t + log(beta)), stable in log space
    log_m = torch.logaddexp(log_s + math.log1p(-beta), log_t + math.log(beta))
    return beta * kl_rows(log_t, log_m) + (1 - beta) * kl_rows(log_s, log_m)


def _log_probs(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float,
    mask: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student logits {tuple(student_logits.shape)} and teacher logits "
            f"{tuple(teacher_logits.shape)} differ in shape (same vocabulary / label set needed)"
        )
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    s = _select(student_logits, mask).float() / temperature
    t = _select(teacher_logits, mask).detach().float() / temperature
    return F.log_softmax(s, dim=-1), F.log_softmax(t, dim=-1)


def forward_kl(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float = 1.0,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """KL(softmax(t/T) || softmax(s/T)), mean over kept positions. logits (..., V), mask (...)."""
    log_s, log_t = _log_probs(student_logits, teacher_logits, temperature, mask)
    return mean_rows(kl_rows(log_t, log_s))


def reverse_kl(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float = 1.0,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """KL(softmax(s/T) || softmax(t/T)), mean over kept positions. logits (..., V), mask (...)."""
    log_s, log_t = _log_probs(student_logits, teacher_logits, temperature, mask)
    return mean_rows(kl_rows(log_s, log_t))


def hinton_kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Hinton et al. (2015) soft-target loss: ``T^2 * KL(softmax(t/T) || softmax(s/T))``.

    logits (B, C) (batchmean) or (B, T, V) with mask (B, T) (mean over kept tokens).
    The gradient of KL at temperature T w.r.t. the student logits is
    ``(softmax(s/T) - softmax(t/T)) / T``, i.e. it shrinks as 1/T (and, for large T, the
    probability difference shrinks as another 1/T); multiplying by T^2 keeps the soft-target
    gradients on the scale of the hard-label ones when T changes (paper, section 2).
    """
    return temperature**2 * forward_kl(student_logits, teacher_logits, temperature, mask)


def generalized_jsd(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    beta: float = 0.5,
    temperature: float = 1.0,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Generalized Jensen-Shannon divergence of GKD (Agarwal et al. 2024, eq. 1), TRL's convention.

    With ``m = beta * p_t + (1 - beta) * p_s`` (both at temperature T)::

        JSD(beta) = beta * KL(p_t || m) + (1 - beta) * KL(p_s || m)

    and, exactly as ``trl``'s ``GKDTrainer.generalized_jsd_loss``, the end points are special
    cases: ``beta == 0`` is the forward KL(p_t || p_s) and ``beta == 1`` the reverse
    KL(p_s || p_t). (The formula itself vanishes at both ends; what tends to the KLs is
    ``JSD(beta) / beta -> KL(p_t || p_s)`` as beta -> 0 and ``JSD(beta) / (1 - beta) ->
    KL(p_s || p_t)`` as beta -> 1.) No T^2 factor is applied here (TRL applies none either).

    logits (..., V), mask (...) (use ``lm_token_mask(labels)`` with ``logits[:, :-1]``).
    Reduction: mean over kept positions, as TRL's ``reduction="batchmean"`` with labels.
    """
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta}")
    log_s, log_t = _log_probs(student_logits, teacher_logits, temperature, mask)
    return mean_rows(jsd_rows(log_s, log_t, beta))


def sparse_forward_kl(
    student_logits: torch.Tensor,
    topk_logprobs: torch.Tensor,
    topk_ids: torch.Tensor,
    mask: torch.Tensor | None = None,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Forward KL against a teacher known only by its top-k log-probabilities (a cached LM teacher).

    student_logits (..., V); topk_logprobs (..., k) teacher log-probs at T=1; topk_ids (..., k)
    their token ids; mask (...). Returns ``T^0`` KL (multiply by T^2 yourself for Hinton scaling).

    Approximation: the teacher is renormalised over its top k tokens at temperature T,
    ``q_i = softmax(topk_logprobs / T)_i`` (exact for the top-k part: dividing log-probs by T and
    renormalising equals softmax(z/T) restricted to those tokens); the mass outside the top k
    (usually tiny for k >= 16) is dropped. The student keeps its *full* normaliser,
    ``log p_s(i) = log_softmax(s/T)_i``, so student mass on tokens outside the teacher's top k is
    still pushed down. With k = V this equals :func:`forward_kl` exactly.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    s = _select(student_logits, mask).float() / temperature
    lp = _select(topk_logprobs, mask).detach().float() / temperature
    ids = _select(topk_ids, mask).long()
    log_q = F.log_softmax(lp, dim=-1)
    log_s = F.log_softmax(s, dim=-1).gather(-1, ids)
    return mean_rows(kl_rows(log_q, log_s))


def hidden_state_loss(
    student_h: torch.Tensor,
    teacher_h: torch.Tensor,
    mask: torch.Tensor | None = None,
    kind: str = "mse",
    projection: nn.Module | None = None,
) -> torch.Tensor:
    """Match hidden states of one mapped layer pair (FitNets / TinyBERT / DistilBERT).

    student_h (B, T, D_s), teacher_h (B, T, D_t), mask (B, T) (attention mask: padding
    excluded). ``projection`` maps D_s -> D_t (a learned ``nn.Linear`` when widths differ,
    TinyBERT's W_h). ``kind="mse"``: mean squared error over kept tokens and dimensions;
    ``kind="cosine"``: mean of ``1 - cos(h_s, h_t)`` over kept tokens (DistilBERT's L_cos).
    """
    if projection is not None:
        student_h = projection(student_h)
    if student_h.shape[-1] != teacher_h.shape[-1]:
        raise ValueError(
            f"hidden widths differ (student {student_h.shape[-1]}, teacher {teacher_h.shape[-1]}); "
            "pass a projection (nn.Linear(student_width, teacher_width))"
        )
    s = _select(student_h, mask).float()
    t = _select(teacher_h, mask).detach().float()
    if kind == "mse":
        return mean_rows((s - t).pow(2).mean(-1))
    if kind == "cosine":
        return mean_rows(1.0 - F.cosine_similarity(s, t, dim=-1))
    raise ValueError(f"unknown hidden-state loss kind {kind!r}; choose 'mse' or 'cosine'")


def attention_loss(
    student_attn: torch.Tensor,
    teacher_attn: torch.Tensor,
    mask: torch.Tensor | None = None,
    kind: str = "kl",
    eps: float = 1e-12,
) -> torch.Tensor:
    """Match attention maps of one mapped layer pair (TinyBERT: MSE; MiniLM: KL).

    student_attn (B, H_s, T, T), teacher_attn (B, H_t, T, T): attention probabilities (rows over
    keys sum to 1; masked keys already have probability 0). mask (B, T) selects the query rows
    that count. When the head counts differ, both maps are averaged over heads first.
    ``kind="kl"``: KL(a_t || a_s) per (head, query row), mean over kept rows; the student's
    probabilities are clamped at ``eps`` (attention dropout in train mode can zero them).
    ``kind="mse"``: squared error averaged over keys, then over kept rows.
    """
    if student_attn.shape[1] != teacher_attn.shape[1]:
        student_attn = student_attn.mean(1, keepdim=True)
        teacher_attn = teacher_attn.mean(1, keepdim=True)
    if student_attn.shape != teacher_attn.shape:
        raise ValueError(
            f"attention maps differ in shape: {tuple(student_attn.shape)} vs "
            f"{tuple(teacher_attn.shape)}"
        )
    heads = student_attn.shape[1]
    rows = None
    if mask is not None:  # (B, T) -> (B, H, T) over query rows
        rows = mask.bool()[:, None, :].expand(-1, heads, -1)
    s = _select(student_attn, rows).float()
    t = _select(teacher_attn, rows).detach().float()
    if kind == "kl":
        return mean_rows(kl_rows(t.clamp_min(0).log(), s.clamp_min(eps).log()))
    if kind == "mse":
        return mean_rows((s - t).pow(2).mean(-1))
    raise ValueError(f"unknown attention loss kind {kind!r}; choose 'kl' or 'mse'")
