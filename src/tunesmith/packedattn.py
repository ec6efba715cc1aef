"""Per-example attention for packed causal-LM rows: ``attn_implementation="tunesmith_packed"``.

A packed row (:mod:`tunesmith.data.packing`) holds several examples whose ``position_ids``
restart at 0. With plain SDPA, transformers turns the resets into a block-diagonal causal
(B, 1, T, T) mask and attention runs over the whole row: T^2 scores per head, most of them masked.
This backend runs causal attention on each example alone instead, sum(L_i^2) scores, with SDPA's
``is_causal`` kernels or, on a CPU where they are slower in bf16/fp16, two GEMMs
(:mod:`tunesmith.causalattn` measures which; they round as transformers' eager attention does)
-- on a CUDA GPU in half precision: torch's ``varlen_attn``, one call per layer. It is exact
(in fp32 to 1e-5): it runs only when the mask transformers built *is* the block-diagonal causal
mask of the row's position resets (checked once per mask, i.e. once per forward, and cached on
the mask tensor); everything else -- padding masks, unpacked batches, a KV cache, a sliding window
shorter than an example, soft-capped logits, attention maps -- goes to transformers' own
``sdpa_attention_forward`` with the mask unchanged. The mask side of the backend is transformers'
``sdpa_mask``, so those cases get exactly the mask plain SDPA gets.

:func:`use_packed_attention` switches a loaded model to it (the default for packed training of a
model on SDPA, unless the recipe names ``model.attn_implementation``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from tunesmith.causalattn import causal_attention

__all__ = ["PACKED", "packed_attention_forward", "segment_groups", "use_packed_attention"]

PACKED = "tunesmith_packed"
_PLAN = "_tunesmith_packed_plan"  # attribute of the mask tensor: (position_ids, Plan or False)
GROUP_WASTE = 1.25  # a group pads its examples to its longest: at most 25% more scores than exact


@dataclass(frozen=True)
class Plan:
    """How one (B, T) batch of packed rows is attended per example.

    ``starts``: (n + 1,) int32 cumulative example starts over the flattened B*T tokens
    (``varlen_attn``'s ``cu_seq``); ``longest``: the longest example; ``groups``: for the SDPA
    path, (padded length, (k * padded,) gather index into the B*T tokens) per group of examples
    of similar length; ``inverse``: (B*T,) index of each token in the groups' concatenated
    outputs."""

    starts: torch.Tensor
    longest: int
    groups: list[tuple[int, torch.Tensor]]
    inverse: torch.Tensor


def segment_groups(lengths: list[int], waste: float = GROUP_WASTE) -> list[list[int]]:
    """Indices of ``lengths`` in groups run as one padded SDPA call: longest first, a group takes
    the next example while (its length)^2 x members <= ``waste`` x the exact sum of squares."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    groups: list[list[int]] = []
    exact = 0
    for i in order:
        if groups:
            top = lengths[groups[-1][0]]
            if top * top * (len(groups[-1]) + 1) <= waste * (exact + lengths[i] ** 2):
                groups[-1].append(i)
                exact += lengths[i] ** 2
                continue
        groups.append([i])
        exact = lengths[i] ** 2
    return groups


def _segment_ids(position_ids: torch.Tensor) -> torch.Tensor:
    """(B, T) -> (B, T) example index within each row: a new example wherever the position is not
    the previous one + 1 (transformers' ``find_packed_sequence_indices``)."""
    diff = torch.diff(position_ids, prepend=position_ids[:, :1] - 1, dim=-1)
    return (diff != 1).cumsum(-1)


def _build_plan(mask: torch.Tensor, position_ids: torch.Tensor) -> Plan | None:
    """The plan of a batch whose ``mask`` (bool, (B or 1, 1, T, T)) is exactly the block-diagonal
    causal mask of ``position_ids`` (B, T); None otherwise (then plain SDPA runs)."""
    if mask.dtype != torch.bool or mask.dim() != 4 or mask.shape[1] != 1:
        return None
    seg = _segment_ids(position_ids)
    b, t = seg.shape
    if mask.shape[-2:] != (t, t) or mask.shape[0] not in (1, b):
        return None
    causal = torch.ones(t, t, dtype=torch.bool, device=seg.device).tril()
    expected = (seg[:, :, None] == seg[:, None, :]) & causal
    if not torch.equal(mask[:, 0].expand(b, t, t), expected):
        return None
    new = torch.ones_like(seg, dtype=torch.bool)
    new[:, 1:] = seg[:, 1:] != seg[:, :-1]
    begin = new.flatten().nonzero().flatten().tolist()  # the one host sync of a forward
    bounds = [*begin, b * t]
    lengths = [e - s for s, e in zip(bounds[:-1], bounds[1:], strict=True)]
    groups, inverse, offset = [], torch.empty(b * t, dtype=torch.long), 0
    for members in segment_groups(lengths):
        pad = lengths[members[0]]
        index = []
        for m in members:
            start, n = bounds[m], lengths[m]
            inverse[start : start + n] = torch.arange(offset, offset + n)
            # padded slots repeat the example's first token; causal attention never lets a real
            # query see them (they come after it), and their outputs are dropped
            index += list(range(start, start + n)) + [start] * (pad - n)
            offset += pad
        groups.append((pad, torch.tensor(index, device=seg.device)))
    starts = torch.tensor(bounds, dtype=torch.int32, device=seg.device)
    return Plan(starts, max(lengths), groups, inverse.to(seg.device))


def _plan_for(mask: Any, position_ids: Any, query: torch.Tensor) -> Plan | None:
    if not isinstance(mask, torch.Tensor) or not isinstance(position_ids, torch.Tensor):
        return None
    cached = getattr(mask, _PLAN, None)
    if cached is not None and cached[0] is position_ids:
        return cached[1] or None
    b = query.shape[0]
    if position_ids.dim() != 2 or position_ids.shape[0] not in (1, b):
        plan = None
    else:
        plan = _build_plan(mask, position_ids.expand(b, -1))
    # one check per forward: its layers share the mask and position_ids objects (a 4D mask
    # passed in again with other positions is checked again)
    setattr(mask, _PLAN, (position_ids, plan or False))
    return plan


def _varlen(query, key, value, plan: Plan, scaling: float | None) -> torch.Tensor | None:
    """One flash ``varlen_attn`` call over all examples (CUDA, half precision, torch >= 2.10)."""
    if not query.is_cuda or query.dtype not in (torch.float16, torch.bfloat16):
        return None
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    b, h, t, d = query.shape
    q, k, v = (
        x.transpose(1, 2).reshape(b * t, x.shape[1], x.shape[-1]) for x in (query, key, value)
    )
    out = varlen_attn(
        q,
        k,
        v,
        plan.starts,
        plan.starts,
        plan.longest,
        plan.longest,
        scale=scaling,
        window_size=(-1, 0),  # causal
        enable_gqa=k.shape[1] != h,
    )
    return out.view(b, t, h, -1)


def _grouped(query, key, value, plan: Plan, dropout: float, scaling: float | None) -> torch.Tensor:
    """Causal SDPA per group of similar-length examples, each padded to its group's longest."""
    b, h, t, _ = query.shape
    kv_heads = key.shape[1]
    gqa = kv_heads != h and key.shape[-1] == value.shape[-1] <= 256  # as transformers' sdpa
    if kv_heads != h and not gqa:
        key, value = repeat_kv(key, h // kv_heads), repeat_kv(value, h // kv_heads)
        kv_heads = h
    flat = [x.transpose(1, 2).reshape(b * t, x.shape[1], x.shape[-1]) for x in (query, key, value)]
    outs = []
    for pad, index in plan.groups:
        q, k, v = (
            x.index_select(0, index).view(-1, pad, *x.shape[1:]).transpose(1, 2) for x in flat
        )
        o = causal_attention(q, k, v, scaling, dropout)
        outs.append(o.transpose(1, 2).reshape(-1, h, o.shape[-1]))
    out = torch.cat(outs) if len(outs) > 1 else outs[0]
    return out.index_select(0, plan.inverse).view(b, t, h, -1)


def packed_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' attention-function signature: query (B, H, T, D), key/value (B, H_kv, T, D)
    -> ((B, T, H, D), None), like ``sdpa_attention_forward``, which runs whatever is not a batch
    of packed rows with their own block-diagonal causal mask (module doc)."""
    exact = (
        query.shape[2] > 1
        and query.shape[2] == key.shape[2]
        and (is_causal if is_causal is not None else getattr(module, "is_causal", True))
        and kwargs.get("softcap") is None
        and kwargs.get("position_bias") is None
        and not kwargs.get("output_attentions", False)
    )
    plan = _plan_for(attention_mask, kwargs.get("position_ids"), query) if exact else None
    if plan is None:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout, scaling, is_causal, **kwargs
        )
    out = _varlen(query, key, value, plan, scaling) if dropout == 0.0 else None
    if out is None:
        out = _grouped(query, key, value, plan, dropout, scaling)
    return out, None


def register() -> None:
    """Make ``tunesmith_packed`` a transformers attention backend (attention and mask side)."""
    AttentionInterface.register(PACKED, packed_attention_forward)
    AttentionMaskInterface.register(PACKED, sdpa_mask)


register()


def use_packed_attention(model: Any) -> bool:
    """Switch ``model`` from SDPA to ``tunesmith_packed`` (same results, per-example attention for
    packed rows); False, unchanged, when its attention is not SDPA."""
    config = getattr(model, "config", None)
    if getattr(config, "_attn_implementation", None) != "sdpa":
        return False
    if not hasattr(model, "set_attn_implementation"):
        return False
    model.set_attn_implementation(PACKED)
    return config._attn_implementation == PACKED
