"""Separate task heads on one shared body: save a task's label projection, swap another one in.

With different label sets per task (AG News: 4 topics, SST-2: 2, TREC: 6) each task keeps its
own *label projection*: the parameters of the model's head whose first dimension is the number
of labels (``classifier.weight``/``bias`` for BERT, ``score.weight`` for GPT-2 / Llama,
``classifier.out_proj.*`` for RoBERTa). Everything else, including a head's hidden layers and
the pooler, is shared body. The head is found with :func:`tunesmith.transfer.layer_layout`, so
no architecture is special-cased.

Swapping uses :func:`torch.func.functional_call`: the model runs with other tensors in place of
its label projection for one call, and gradients still reach the body. Because a label
projection is a linear map, several heads stacked along dim 0 give all their logits in one
forward (:func:`logits_per_head`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torch.func import functional_call

from tunesmith.errors import ModelError
from tunesmith.transfer import layer_layout

__all__ = [
    "fresh_head",
    "init_head_",
    "head_state",
    "label_projection_names",
    "logits_per_head",
]


def init_head_(param: torch.Tensor, std: float, generator: torch.Generator | None = None) -> None:
    """Initialise a new head parameter in place as transformers initialises classifier heads:
    weights (2-D and up) ~ N(0, std), biases 0. ``generator`` None draws from the global RNG."""
    if param.dim() >= 2:
        param.normal_(0.0, std, generator=generator)
    else:
        param.zero_()


def label_projection_names(model: nn.Module) -> list[str]:
    """Names of the head parameters whose first dimension is ``model.config.num_labels``."""
    n = model.config.num_labels
    head = layer_layout(model).head
    names = [
        name
        for name, p in model.named_parameters()
        if p.shape and p.shape[0] == n and any(name == h or name.startswith(h + ".") for h in head)
    ]
    if not names:
        raise ModelError(
            f"{type(model).__name__} has no label projection (head parameters with "
            f"{n} rows); separate task heads need a classification head (heads: shared instead)"
        )
    return names


def head_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A CPU copy of the model's current label projection (this task's head)."""
    params = dict(model.named_parameters())
    return {n: params[n].detach().cpu().clone() for n in label_projection_names(model)}


def fresh_head(model: nn.Module, num_labels: int, seed: int) -> dict[str, torch.Tensor]:
    """A new, seeded label projection for ``num_labels`` labels, initialised as transformers
    initialises heads: weights ~ N(0, initializer_range), biases 0."""
    params = dict(model.named_parameters())
    std = float(getattr(model.config, "initializer_range", 0.02))
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name in label_projection_names(model):
        out[name] = torch.empty(num_labels, *params[name].shape[1:])
        init_head_(out[name], std, g)
    return out


def logits_per_head(
    model: nn.Module,
    heads: Sequence[Mapping[str, torch.Tensor]],
    inputs: Mapping[str, torch.Tensor],
) -> list[torch.Tensor]:
    """``model``'s logits under each head in ``heads``: one forward with the heads stacked.

    inputs: the model's forward kwargs (B, T). Returns ``[(B, C_k)]`` in the order of ``heads``.
    """
    if not heads:
        return []
    ref = next(p for p in model.parameters())
    names = list(heads[0])
    stacked = {
        n: torch.cat([h[n].to(device=ref.device, dtype=ref.dtype) for h in heads]) for n in names
    }
    sizes = [int(h[names[0]].shape[0]) for h in heads]
    logits = functional_call(model, stacked, args=(), kwargs=dict(inputs), strict=False).logits
    return list(torch.split(logits, sizes, dim=-1))
