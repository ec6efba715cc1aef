"""MAS, Memory Aware Synapses (Aljundi et al. 2018): the importance, the term and the method.

Aljundi, Babiloni, Elhoseiny, Rohrbach, Tuytelaars 2018, "Memory Aware Synapses: Learning what
(not) to forget" (ECCV), Eq. 2-4: the importance of parameter i is how much the squared norm of
the network's output moves with it, averaged over examples, no labels needed::

    Omega_i = (1/N) sum_x | d ||F(x)||_2^2 / d theta_i |

``F(x)`` is the logits: (C,) for a classification example; for a per-token output (a causal LM)
the mean over the example's attended positions of ``||F_t(x)||^2`` (so Omega does not grow with
length). Per example, so every absolute value is a per-example gradient's. The penalty is EWC's
with Omega in place of the Fisher, anchored at the weights after the previous stage, and Omega
accumulates over tasks as in the paper (``Omega <- Omega + Omega_k``)::

    (lambda / 2) sum_i Omega_i (theta_i - theta*_i)^2

Each task's Omega_k is normalised to mean 1 over the penalised parameters first (``normalize:
mean``, as the EWC Fisher; ``none`` keeps the raw values). Method ``mas`` (``continual: {method:
mas, mas: {weight, max_examples, normalize}}``); the running Omega lives in the state's
``online_fisher`` (the running importance) and the anchor in its ``anchors``.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import torch
from torch import nn

from tunesmith.configschema import fld
from tunesmith.errors import ConfigError
from tunesmith.objectives.base import register
from tunesmith.objectives.continual.base import ContinualMethod, SequenceView, register_method
from tunesmith.objectives.continual.ewc import EWCTerm, check_weight, stage_weights
from tunesmith.objectives.continual.fisher import normalize_fisher, online_update
from tunesmith.objectives.continual.state import ContinualState
from tunesmith.objectives.continual.term import STATE_HELP
from tunesmith.tasks import model_inputs

__all__ = ["MASMethod", "MASTerm", "mas_importance", "output_sq_norm"]


def output_sq_norm(logits: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``||F(x)||^2`` of one example: logits (1, C) -> the sum of squares; (1, T, V) -> the mean
    over the positions where ``mask`` (1, T) is 1 of each position's sum of squares."""
    sq = logits.float().pow(2)
    if sq.dim() == 2:
        return sq.sum()
    per_position = sq.sum(-1)  # (1, T)
    if mask is None:
        return per_position.mean()
    keep = mask.to(per_position.dtype)
    return (per_position * keep).sum() / keep.sum().clamp(min=1)


def mas_importance(
    model: nn.Module,
    examples: Sequence[Mapping[str, Any]],
    collator: Callable[[list], dict[str, torch.Tensor]],
    task: str,
) -> dict[str, torch.Tensor]:
    """Omega ``{name: tensor like the parameter}`` (fp32, CPU) of the trainable parameters of
    ``model``: the mean over ``examples`` (encoded, one at a time) of ``|d ||F(x)||^2 / d
    theta|``. Labels are not read. The model runs in eval mode and is put back as it was."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named or not examples:
        raise ValueError("MAS needs trainable parameters and at least one example")
    device = named[0][1].device
    params = [p for _, p in named]
    sums = [torch.zeros_like(p, dtype=torch.float32) for p in params]
    was_training = model.training
    model.eval()
    try:
        for example in examples:
            batch = {k: v.to(device) for k, v in collator([example]).items()}
            logits = model(**model_inputs(task, batch)).logits
            norm = output_sq_norm(
                logits, batch.get("attention_mask") if logits.dim() == 3 else None
            )
            grads = torch.autograd.grad(norm, params, allow_unused=True)
            for acc, g in zip(sums, grads, strict=True):
                if g is not None:
                    acc.add_(g.detach().float().abs())
    finally:
        model.train(was_training)
    return {n: (acc / len(examples)).cpu() for (n, _), acc in zip(named, sums, strict=True)}


class MASTerm(EWCTerm):
    name = "mas"

    @dataclasses.dataclass
    class Params:
        state: str | None = fld(None, STATE_HELP)

    def penalties(self, state: ContinualState) -> list[tuple[dict | None, dict]]:
        anchor = state.latest_anchor()
        if not anchor or not state.online_fisher:
            return []
        return [(dict(state.online_fisher), anchor)]


class MASMethod(ContinualMethod):
    """MAS between stages: the latest weights and the accumulated importance Omega."""

    name = "mas"

    @dataclasses.dataclass
    class Params:
        weight: float = fld(1.0, "lambda, the mas term's weight (on the mean-1 Omega)")
        max_examples: int = fld(512, "training examples of the finished task used (seeded)")
        normalize: Literal["mean", "none"] = fld(
            "mean", "mean: each task's Omega scaled to mean 1 before it is added; none: raw"
        )

        def validate(self, path: str) -> None:
            check_weight(self.weight, path)
            if self.max_examples < 1:
                raise ConfigError(f"{path}.max_examples", "must be >= 1")

    def terms(self, seq: SequenceView, k: int) -> list[dict[str, Any]]:
        params = {"state": str(seq.state_path(k))}
        return [{"name": "mas", "weight": self.params.weight, "params": params}]

    def update_state(self, state, previous, seq, model, i) -> None:
        anchor = stage_weights(seq, model, i)  # also marks what stage i trained as trainable
        records = seq.train_records(i)
        rng = random.Random(seq.seed + 2000 + i)
        picked = sorted(
            rng.sample(range(len(records)), min(self.params.max_examples, len(records)))
        )
        examples = seq.encoded(i, [records[r] for r in picked], f"MAS data ({seq.names[i]})")
        full = mas_importance(model, examples, seq.collator(), seq.task_type)
        omega = normalize_fisher({n: full[n] for n in anchor}, self.params.normalize)
        state.anchors = {seq.names[i]: anchor}
        state.online_fisher = online_update(previous.online_fisher, omega, 1.0)


register(
    MASTerm, "MAS: (lambda/2) sum Omega (theta - theta*)^2, Omega from output norms (Aljundi 2018)"
)
register_method(
    MASMethod, "MAS: importance from the output's squared norm, no labels (Aljundi 2018)"
)
