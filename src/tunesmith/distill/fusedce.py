"""Cross-entropy of a plain linear LM head, its gradients computed chunk by chunk in the forward.

The chunked causal-LM loss (:mod:`tunesmith.distill.chunked`) checkpoints each chunk of rows:
the head's logits are computed in the forward, freed, and computed again in the backward to get
their gradient. For cross-entropy that second head GEMM (and log-softmax) is avoidable: the
gradient of ``sum_i CE(h_i W^T + b, y_i)`` with respect to the logits is ``softmax - onehot``,
known as soon as the logits are, so :class:`LinearCrossEntropy` computes, per chunk, the logits,
the loss, that gradient and from it the gradients of the hidden rows (``g W``), of the weight
(``g^T h``, when it trains) and of the bias, then frees the chunk. The backward only scales the
stored gradients by the incoming one (the loss is linear in them). Peak memory is still one
chunk's logits; the hidden rows' gradient (N x H) is kept from forward to backward.

Used by the chunked cross-entropy when the head is a frozen bare ``nn.Linear`` (adapters or a
frozen base elsewhere; no adapter hooks on the head; not FSDP-sharded; :func:`fusable`), with
Gemma's final-logit soft-capping folded in (``c tanh(z / c)``, derivative ``1 - tanh^2``). The
GEMMs run under the caller's autocast exactly as the module's would, so values and gradients
equal the checkpointed path's to float rounding (tested to 1e-5 in fp32).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tunesmith.memory import cast_inputs

__all__ = ["LinearCrossEntropy", "fusable", "linear_cross_entropy_sum"]


def fusable(module: nn.Module) -> bool:
    """Whether ``module`` is a frozen bare ``nn.Linear`` whose output is exactly ``F.linear``: no
    hooks (adapters on the head) but the input cast of a model with bf16 frozen weights, plain
    tensor weights (not FSDP's DTensors). A trained head is left to the checkpointed chunks: its
    fp32 weight gradient, built here beside ``.grad``, would be a transient extra vocabulary x
    hidden matrix (670 MB for Gemma-3's tied head)."""
    if type(module) is not nn.Linear or module._forward_hooks or module.weight.requires_grad:
        return False
    if any(hook is not cast_inputs for hook in module._forward_pre_hooks.values()):
        return False  # only the input cast of a mixed-dtype model (memory.py), done here too
    return all(type(p) in (torch.Tensor, nn.Parameter) for p in module.parameters())


class LinearCrossEntropy(torch.autograd.Function):
    """sum over rows of CE(softcap(h W^T + b), y) for hidden (N, H), targets (N,)."""

    @staticmethod
    def forward(  # noqa: PLR0913  (autograd.Function takes its inputs positionally)
        ctx: Any,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        targets: torch.Tensor,
        chunk: int,
        softcap: float | None,
    ) -> torch.Tensor:
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = torch.zeros_like(weight, dtype=torch.float32) if need_w else None
        grad_b = torch.zeros_like(bias, dtype=torch.float32) if need_b else None
        for start in range(0, hidden.shape[0], chunk):
            h, y = hidden[start : start + chunk], targets[start : start + chunk]
            logits = F.linear(h, weight, bias)
            z = logits.float()
            if softcap:
                capped = torch.tanh(z / softcap)
                z = capped * softcap
            lse = torch.logsumexp(z, dim=-1)
            total += (lse - z.gather(1, y[:, None]).squeeze(1)).sum()
            if not (need_h or need_w or need_b):
                continue
            dtype = logits.dtype
            g = z.sub_(lse[:, None]).exp_()  # softmax, in place: the logits are not needed again
            g[torch.arange(y.shape[0], device=y.device), y] -= 1.0
            if softcap:
                g = g.mul_(capped.mul_(capped).neg_().add_(1.0))
            g = g.to(dtype)
            if need_h:
                grad_h[start : start + chunk] = torch.matmul(g, weight).to(hidden.dtype)
            if need_w:
                grad_w += torch.matmul(g.t(), h).float()
            if need_b:
                grad_b += g.float().sum(0)
        ctx.save_for_backward(*(t for t in (grad_h, grad_w, grad_b) if t is not None))
        ctx.which = (need_h, need_w, need_b)
        ctx.dtypes = (weight.dtype, None if bias is None else bias.dtype)
        return total

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple:
        saved = iter(ctx.saved_tensors)
        grad_h, grad_w, grad_b = (next(saved) * grad_out if need else None for need in ctx.which)
        if grad_w is not None:
            grad_w = grad_w.to(ctx.dtypes[0])
        if grad_b is not None:
            grad_b = grad_b.to(ctx.dtypes[1])
        return grad_h, grad_w, grad_b, None, None, None


def linear_cross_entropy_sum(
    hidden: torch.Tensor,
    head: nn.Linear,
    targets: torch.Tensor,
    chunk: int,
    softcap: float | None = None,
) -> torch.Tensor:
    """Summed next-token cross-entropy of ``head`` (a :func:`fusable` linear) over ``hidden``
    rows (N, H) and their targets (N,), ``chunk`` rows at a time (module doc)."""
    if cast_inputs in head._forward_pre_hooks.values():
        (hidden,), _ = cast_inputs(head, (hidden,), {})
    return LinearCrossEntropy.apply(hidden, head.weight, head.bias, targets, chunk, softcap)
