"""Chunked causal-LM losses: cross-entropy and LM distillation without the full logits.

A causal LM's logits are ``tokens x vocab`` fp32 values per micro-batch (8 x 512 tokens x 262k
vocabulary is 4.3 GB). ``train.loss_chunk_tokens`` avoids them: the model runs with its output
head skipped (:func:`forward_hidden` captures the head's input, the final hidden states), only
the positions whose next token is trained are kept (``labels[:, 1:] != -100``), and the head +
loss are applied to ``chunk`` of those rows at a time. Cross-entropy through a frozen linear head
computes each chunk's gradients in the forward (:mod:`tunesmith.distill.fusedce`: no second head
pass); every other case runs each chunk under
``torch.utils.checkpoint`` (non-reentrant): its logits are freed after the forward and
recomputed in the backward, so peak memory holds one chunk's logits (and their gradient).

The head is called as a module (:class:`LMHead`), so adapters on ``lm_head`` (LoRA hooks) run
per chunk; Gemma's ``final_logit_softcapping`` is applied after it. Whether a model's logits
really are ``head(hidden)`` (+ softcap) is checked once per model (:func:`lm_head`).

Values equal the unchunked losses (:func:`tunesmith.tasks.causal_lm.causal_lm_loss`,
:func:`~tunesmith.distill.losses.generalized_jsd`,
:func:`~tunesmith.distill.losses.sparse_forward_kl`) up to float rounding: each is a mean over
the kept rows, computed here as (sum over chunks of chunk-mean x chunk-rows) / rows. A live
teacher's head is applied per chunk too (under ``no_grad``, again in the backward's recompute);
cached top-k teacher outputs are sliced per chunk. Dropout inside the head (e.g. LoRA dropout on
``lm_head``) draws its masks per chunk, so only then do chunked and unchunked runs differ.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributed.fsdp import FSDPModule
from torch.distributed.tensor import DTensor
from torch.utils.checkpoint import checkpoint

from tunesmith.distill.fusedce import fusable, linear_cross_entropy_sum
from tunesmith.distill.losses import generalized_jsd, lm_token_mask, sparse_forward_kl
from tunesmith.distill.topk import topk_tail_rows
from tunesmith.errors import ConfigError

__all__ = [
    "ChunkedLM",
    "ChunkedOutputs",
    "LMHead",
    "chunked_causal_lm_loss",
    "chunked_divergence",
    "chunked_forward",
    "chunked_sparse_forward_kl",
    "forward_hidden",
    "lm_head",
]

KEY = "train.loss_chunk_tokens"
_checked: weakref.WeakSet[nn.Module] = weakref.WeakSet()


@dataclass
class LMHead:
    """A causal LM's output head as a function of final hidden states (N, H) -> logits (N, V)."""

    module: nn.Module
    softcap: float | None = None
    root: nn.Module | None = None  # the model owning ``module`` (FSDP: see ``gathered``)

    def __call__(self, hidden: torch.Tensor) -> torch.Tensor:
        with gathered(self.root, self.module):
            logits = self.module(hidden)
        if self.softcap:  # Gemma 2/3: the same three operations as the model's forward
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits


@contextlib.contextmanager
def gathered(root: nn.Module | None, head: nn.Module) -> Iterator[None]:
    """FSDP2 (``train.distributed.strategy: fsdp``): the head is part of the sharded root unit.
    A training forward leaves the root's weights gathered until its backward, so the per-chunk
    head calls (and their recompute in backward) see full weights; a ``no_grad`` forward
    (evaluation, the start-up check) reshards them at once: gather them for the call here."""
    sharded = isinstance(root, FSDPModule) and any(
        isinstance(p, DTensor) for p in head.parameters()
    )
    if not sharded:
        yield
        return
    root.unshard()
    try:
        yield
    finally:
        root.reshard()


def forward_hidden(
    model: nn.Module, head: nn.Module, inputs: Mapping[str, Any]
) -> tuple[Any, torch.Tensor]:
    """Run ``model(**inputs)`` with its output head ``head`` skipped: (outputs, final hidden).

    A forward pre-hook (first in line, so adapter hooks see what the head sees) captures the
    head's input and hands the head an empty slice of it instead, so ``outputs.logits`` has no
    positions and costs nothing. ``model`` may be a wrapper (DDP) of the model owning ``head``.
    """
    captured: list[torch.Tensor] = []

    def capture(module: nn.Module, args: tuple) -> tuple:
        captured.append(args[0])
        return (args[0].narrow(-2, 0, 0), *args[1:])

    handle = head.register_forward_pre_hook(capture, prepend=True)
    try:
        outputs = model(**inputs)
    finally:
        handle.remove()
    if len(captured) != 1:
        raise ConfigError(
            KEY,
            f"{type(model).__name__} called its output head {len(captured)} times in one forward "
            "(the chunked loss needs exactly one call on the final hidden states)",
            "unset train.loss_chunk_tokens for this model",
        )
    return outputs, captured[0]


def lm_head(model: nn.Module) -> LMHead:
    """``model``'s head (``get_output_embeddings()`` + softcapping), checked once per model to
    reproduce its logits on a short input (a model that transforms its logits otherwise, e.g.
    by a logit scale, is refused instead of training on a different loss)."""
    cap = getattr(model.config, "final_logit_softcapping", None)
    head = LMHead(model.get_output_embeddings(), float(cap) if cap else None, root=model)
    if model not in _checked:
        _check_head(model, head)
        _checked.add(model)
    return head


@torch.no_grad()
def _check_head(model: nn.Module, head: LMHead) -> None:
    vocab = int(model.get_input_embeddings().weight.shape[0])
    device = next(model.parameters()).device
    ids = (torch.arange(1, 6, device=device) % vocab)[None]
    was_training = model.training
    model.eval()
    try:
        full = model(input_ids=ids, use_cache=False).logits
        _, hidden = forward_hidden(model, head.module, {"input_ids": ids, "use_cache": False})
        ours = head(hidden)
    finally:
        model.train(was_training)
    if full.shape != ours.shape or not torch.allclose(
        full.float(), ours.float(), atol=1e-4, rtol=1e-3
    ):
        raise ConfigError(
            KEY,
            f"{type(model).__name__}'s logits are not its output head applied to its final "
            "hidden states (a logit transform the chunked loss does not know)",
            "unset train.loss_chunk_tokens for this model",
        )


def _chunk_sum(fn: Callable[..., torch.Tensor], chunk: int, *rows: torch.Tensor) -> torch.Tensor:
    """sum over chunks of ``fn(*chunk_rows)`` (each a scalar), every chunk recomputed in backward.

    An empty ``rows`` gives 0 in the graph of ``rows[0]``."""
    total = rows[0][:0].float().sum()
    for start in range(0, rows[0].shape[0], chunk):
        parts = [r[start : start + chunk] for r in rows]
        total = total + checkpoint(fn, *parts, use_reentrant=False)
    return total


def _trained_rows(hidden: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mask (B, T-1), hidden rows (N, H)) of the positions whose next token is trained."""
    mask = lm_token_mask(labels)
    return mask, hidden[:, :-1][mask]


def chunked_causal_lm_loss(
    hidden: torch.Tensor, labels: torch.Tensor, head: LMHead, chunk: int
) -> torch.Tensor:
    """:func:`~tunesmith.tasks.causal_lm.causal_lm_loss` from hidden (B, T, H), labels (B, T).

    Mean next-token cross-entropy over the trained positions (nan when there are none, as the
    unchunked loss)."""
    mask, rows = _trained_rows(hidden, labels)
    targets = labels[:, 1:][mask]
    if targets.numel() and fusable(head.module) and not isinstance(head.root, FSDPModule):
        return linear_cross_entropy_sum(rows, head.module, targets, chunk, head.softcap) / (
            targets.numel()
        )

    def part(h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(head(h).float(), y, reduction="sum")

    return _chunk_sum(part, chunk, rows, targets) / targets.numel()


def chunked_divergence(
    hidden: torch.Tensor,
    labels: torch.Tensor,
    head: LMHead,
    teacher_hidden: torch.Tensor,
    teacher_head: LMHead,
    chunk: int,
    beta: float = 0.0,
    temperature: float = 1.0,
) -> torch.Tensor:
    """:func:`~tunesmith.distill.losses.generalized_jsd` (beta 0 = forward KL, 1 = reverse KL) of
    the next-token distributions at the trained positions, without either model's full logits.

    hidden (B, T, H) of the student, teacher_hidden (B, T, H_t) (no gradient), labels (B, T).
    Mean over the kept positions (0 when there are none); no T^2 factor."""
    mask, rows = _trained_rows(hidden, labels)
    teacher_rows = teacher_hidden[:, :-1][mask].detach()

    def part(h: torch.Tensor, th: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            teacher = teacher_head(th)
        return generalized_jsd(head(h), teacher, beta, temperature) * h.shape[0]

    return _chunk_sum(part, chunk, rows, teacher_rows) / max(rows.shape[0], 1)


def chunked_sparse_forward_kl(
    hidden: torch.Tensor,
    labels: torch.Tensor,
    head: LMHead,
    topk_logprobs: torch.Tensor,
    topk_ids: torch.Tensor,
    chunk: int,
    temperature: float = 1.0,
) -> torch.Tensor:
    """:func:`~tunesmith.distill.losses.sparse_forward_kl` against cached top-k teacher outputs.

    topk_logprobs / topk_ids (B, T, k), row t = the teacher's prediction of token t+1 (as in the
    batch: compare with position t). Mean over the kept positions (0 when there are none)."""
    mask, rows = _trained_rows(hidden, labels)
    lp, ids = topk_logprobs[:, :-1][mask], topk_ids[:, :-1][mask]

    def part(h: torch.Tensor, lp: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        return sparse_forward_kl(head(h), lp, ids, None, temperature) * h.shape[0]

    return _chunk_sum(part, chunk, rows, lp, ids) / max(rows.shape[0], 1)


def chunked_topk_tail(
    hidden: torch.Tensor,
    labels: torch.Tensor,
    head: LMHead,
    batch: Any,
    chunk: int,
    beta: float = 0.0,
    temperature: float = 1.0,
) -> torch.Tensor:
    """:func:`~tunesmith.distill.topk.cached_lm_divergence` against the cached top-k + tail keys
    of ``batch`` (``teacher_topk_ids`` / ``_logprobs`` / ``_tail``, (B, T, ...), row t = the
    teacher's prediction of token t+1). Mean over the kept positions (0 when there are none)."""
    mask, rows = _trained_rows(hidden, labels)
    cached = [batch[f"teacher_topk_{k}"][:, :-1][mask] for k in ("ids", "logprobs", "tail")]

    def part(h: torch.Tensor, ids: torch.Tensor, lp: torch.Tensor, tail: torch.Tensor):
        return topk_tail_rows(head(h), ids, lp, tail, beta, temperature).sum()

    return _chunk_sum(part, chunk, rows, *cached) / max(rows.shape[0], 1)


@dataclass
class ChunkedLM:
    """A student's final hidden states and head: the losses above, bound to them."""

    hidden: torch.Tensor
    head: LMHead
    chunk: int

    def loss(self, labels: torch.Tensor) -> torch.Tensor:
        return chunked_causal_lm_loss(self.hidden, labels, self.head, self.chunk)

    def divergence(
        self,
        labels: torch.Tensor,
        teacher_hidden: torch.Tensor,
        teacher_head: LMHead,
        beta: float,
        temperature: float,
    ) -> torch.Tensor:
        return chunked_divergence(
            self.hidden, labels, self.head, teacher_hidden, teacher_head, self.chunk, beta,
            temperature,
        )  # fmt: skip

    def sparse_forward_kl(
        self, labels: torch.Tensor, lp: torch.Tensor, ids: torch.Tensor, temperature: float
    ) -> torch.Tensor:
        return chunked_sparse_forward_kl(
            self.hidden, labels, self.head, lp, ids, self.chunk, temperature
        )

    def topk_tail(self, labels: torch.Tensor, batch: Any, beta: float, temperature: float):
        return chunked_topk_tail(
            self.hidden, labels, self.head, batch, self.chunk, beta, temperature
        )


class ChunkedOutputs:
    """A model's outputs without logits: ``lm`` (:class:`ChunkedLM`) computes the LM losses; every
    other field (``hidden_states``, ``attentions``) is the model's. Reading ``logits`` fails with
    a one-line error (a term that needs the full logits cannot run chunked)."""

    def __init__(self, outputs: Any, lm: ChunkedLM):
        self._outputs = outputs
        self.lm = lm

    @property
    def logits(self) -> torch.Tensor:
        raise ConfigError(
            KEY,
            "an objective term reads the full logits, which the chunked loss never builds "
            "(chunked: the task loss, kd, lm_kd, gkd, hidden-state and attention terms)",
            "unset train.loss_chunk_tokens, or drop that term",
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["_outputs"], name)


def chunked_forward(
    model: nn.Module,
    raw_model: nn.Module,
    inputs: Mapping[str, Any],
    chunk: int,
    terms: Iterable[Any] = (),
) -> ChunkedOutputs:
    """``model(**inputs)`` with the head skipped, as :class:`ChunkedOutputs` (``raw_model``: the
    unwrapped ``model``, which owns the head). Live teachers of ``terms`` are switched to skip
    their head too, before any term runs them (their logits are never built whole either)."""
    for term in terms:
        runner = getattr(term, "teacher", None)
        if hasattr(runner, "skip_head"):
            runner.skip_head()
    head = lm_head(raw_model)
    outputs, hidden = forward_hidden(model, head.module, inputs)
    return ChunkedOutputs(outputs, ChunkedLM(hidden, head, chunk))
