"""Score several continuations of one prompt in one forward ("tree" rows) for decoder-only models.

Label-word scoring (:mod:`tunesmith.train.scoring`) asks for ``log p(word | prompt)`` of every
label word after every prompt. Run as separate sequences, the prompt is encoded once per word. A
tree row holds the sequences' common prefix ``P`` once and then every sequence's remaining tokens
(its *branch*) one after another::

    row:        P_0 .. P_{p-1} | a_0 a_1 | b_0 | c_0 c_1 c_2        (branches of words a, b, c)
    positions:  0   .. p-1     | p   p+1 | p   | p   p+1 p+2
    attends to: causal in P    | P + own branch tokens before it

Each branch token attends only to ``P`` and the earlier tokens of its own branch, at the position
it has in its own sequence, so every logit equals the one of the separate sequence (up to float
rounding). Only the positions that predict a scored token go through the LM head
(``logits_to_keep``): rows are left-padded, so those positions are the last ``K`` of every row.

The mask is built by transformers' ``create_causal_mask`` with the tree as ``and_mask_function``,
so it has the form the model's attention implementation wants (boolean for SDPA, additive for
eager). A sliding-window layer gets its own mask (the window counted in positions, not in row
indices) through the per-layer-type mask dict of models that declare ``config.layer_types``.
:func:`can_share_prompt` is the rule for when this is exact; everything else is scored as
separate sequences.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from tunesmith.data.encode import IGNORE_INDEX
from tunesmith.packedattn import PACKED

__all__ = ["SHARED_PROMPT_MODELS", "TreeRow", "can_share_prompt", "score_tree_rows", "tree_row"]

SHARED_PROMPT_MODELS = frozenset(
    {"llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3_text", "gpt2"}
)
"""Model types whose position encoding reads ``position_ids`` (rotary or learned; no ALiBi or
relative buckets computed from row indices) and whose attention takes a prepared mask; each is
checked against separate sequences in tests/unit/train/test_scoring_shared.py."""
_ATTENTION = ("sdpa", "eager", PACKED)  # flash attention takes no tree mask: separate sequences
_LAYER_TYPES = {"full_attention", "sliding_attention"}


@dataclass
class TreeRow:
    """One prompt's sequences as one row: ``ids`` / ``positions`` / ``branch`` (0 = the shared
    prefix, j + 1 = sequence j's own tokens) per row token, and ``targets``: (row index that
    predicts the token, token id, output slot) for every scored token."""

    ids: list[int] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    branch: list[int] = field(default_factory=list)
    targets: list[tuple[int, int, int]] = field(default_factory=list)


def tree_row(examples: Sequence[dict], first_slot: int) -> TreeRow:
    """The tree row of ``examples`` (encoded sequences with ``input_ids`` and ``labels``, the
    scored tokens those whose label is not ``IGNORE_INDEX``); example j's score goes to output
    slot ``first_slot + j``."""
    seqs = [list(ex["input_ids"]) for ex in examples]
    p = _common_prefix(seqs)
    row = TreeRow(seqs[0][:p], list(range(p)), [0] * p)
    for j, (seq, ex) in enumerate(zip(seqs, examples, strict=True)):
        start = len(row.ids)
        row.ids += seq[p:]
        row.positions += range(p, len(seq))
        row.branch += [j + 1] * (len(seq) - p)
        for t, label in enumerate(ex["labels"]):
            if t > 0 and label != IGNORE_INDEX:  # position t - 1 predicts token t
                src = t - 1 if t - 1 < p else start + t - 1 - p
                row.targets.append((src, int(label), first_slot + j))
    return row


def _common_prefix(seqs: list[list[int]]) -> int:
    n = min(len(s) for s in seqs)
    for i in range(n):
        if any(s[i] != seqs[0][i] for s in seqs[1:]):
            return i
    return n


def can_share_prompt(model: Any, longest: int) -> bool:
    """Whether tree rows score ``model`` exactly; ``longest``: the longest scored sequence.

    Yes for a decoder-only model of a type in :data:`SHARED_PROMPT_MODELS` on SDPA, eager or
    ``tunesmith_packed`` attention whose forward takes ``position_ids`` and ``logits_to_keep``,
    with full or sliding-window layers only; a sliding window shorter than ``longest`` needs
    ``config.layer_types`` (one mask per layer type)."""
    config = model.config
    if getattr(config, "is_encoder_decoder", False) or not getattr(config, "is_causal", True):
        return False
    if getattr(config, "use_bidirectional_attention", False):
        return False
    if config.model_type not in SHARED_PROMPT_MODELS:
        return False
    if getattr(config, "_attn_implementation", None) not in _ATTENTION:
        return False
    if not {"position_ids", "logits_to_keep"} <= set(inspect.signature(model.forward).parameters):
        return False
    layer_types = getattr(config, "layer_types", None)
    if not set(layer_types or ()) <= _LAYER_TYPES:
        return False
    window = getattr(config, "sliding_window", None)
    return not (window and longest > window and not layer_types)


def score_tree_rows(
    model: Any, rows: list[TreeRow], n_slots: int, reduction: str, pad_id: int, budget: int
) -> torch.Tensor:
    """(n_slots,) sum (or mean) of the scored tokens' log-probabilities per output slot.

    Rows run longest first, as many per forward as fit ``budget`` tokens (rows x longest row),
    at least one."""
    device = next(model.parameters()).device
    total = torch.zeros(n_slots, dtype=torch.float32, device=device)
    count = torch.zeros(n_slots, dtype=torch.float32, device=device)
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i].ids))
    start = 0
    while start < len(order):
        width = len(rows[order[start]].ids)
        n = max(1, min(len(order) - start, budget // max(width, 1)))
        batch = [rows[i] for i in order[start : start + n]]
        slot, logp = _batch_log_probs(model, batch, pad_id, device)
        total.index_add_(0, slot, logp)
        count.index_add_(0, slot, torch.ones_like(logp))
        start += n
    return total / count.clamp(min=1) if reduction == "mean" else total


def _batch_log_probs(model, rows: list[TreeRow], pad_id: int, device) -> tuple[torch.Tensor, ...]:
    """(slot, log p(token)) of every scored token of ``rows``, from one forward."""
    width = max(len(r.ids) for r in rows)
    # the LM head runs on the last `keep` positions only: every row's first predicting position on
    keep = max(len(r.ids) - min(t[0] for t in r.targets) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    pos = torch.zeros((len(rows), width), dtype=torch.long)
    branch = torch.full((len(rows), width), -1, dtype=torch.long)
    where, tokens, slots = [], [], []
    for b, r in enumerate(rows):
        off = width - len(r.ids)  # left padding
        ids[b, off:] = torch.tensor(r.ids)
        pos[b, off:] = torch.tensor(r.positions)
        branch[b, off:] = torch.tensor(r.branch)
        for src, token, slot in r.targets:
            where.append((b, off + src - (width - keep)))
            tokens.append(token)
            slots.append(slot)
    ids, pos, branch = ids.to(device), pos.to(device), branch.to(device)
    logits = model(
        input_ids=ids,
        attention_mask=_tree_masks(model, branch, pos),
        position_ids=pos,
        logits_to_keep=keep,
    ).logits
    b_idx, k_idx = torch.tensor(where, device=device).T
    picked = logits[b_idx, k_idx].float()  # (n_tokens, V)
    token = torch.tensor(tokens, device=device)
    logp = F.log_softmax(picked, dim=-1).gather(-1, token[:, None]).squeeze(-1)
    return torch.tensor(slots, device=device), logp


def _tree_masks(model, branch: torch.Tensor, pos: torch.Tensor):
    """The attention mask of tree rows ((B, T) ``branch`` ids, -1 = padding, and positions), in
    the model's format; a dict per layer type where a sliding window is shorter than a row's
    longest sequence."""
    from transformers.masking_utils import create_causal_mask

    config = model.config
    embed = model.get_input_embeddings().weight
    shape = torch.empty(branch.shape[0], branch.shape[1], 0, dtype=embed.dtype, device=pos.device)

    def tree(b, h, q, kv):  # the shared prefix, or the query's own branch
        return (branch[b, kv] == 0) | (branch[b, kv] == branch[b, q])

    def build(fn):
        return create_causal_mask(
            config, shape, branch.ge(0).long(), cache=None, position_ids=pos, and_mask_function=fn
        )

    full = build(tree)
    window = getattr(config, "sliding_window", None)
    layer_types = getattr(config, "layer_types", None)
    if not window or int(pos.max()) < window or not layer_types:
        return full  # no sequence reaches past the window: sliding layers see everything too

    def sliding(b, h, q, kv):  # the window in positions (a branch's row indices skip siblings)
        return tree(b, h, q, kv) & (pos[b, q] - pos[b, kv] < window)

    masks = {"full_attention": full}
    if "sliding_attention" in layer_types:
        masks["sliding_attention"] = build(sliding)
    return masks
