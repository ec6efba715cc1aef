"""A-GEM, Averaged Gradient Episodic Memory (Chaudhry et al. 2019): the term and the method.

Chaudhry, Ranzato, Rohrbach, Elhoseiny 2019, "Efficient Lifelong Learning with A-GEM" (ICLR),
Eq. 11: with ``g`` the new task's gradient and ``g_ref`` the gradient of the loss on a batch
drawn from the episodic memory (every earlier task's examples),

    g <- g - (g . g_ref / g_ref . g_ref) g_ref      if g . g_ref < 0, else g unchanged,

over all trainable parameters as one vector, so the step never increases the memory loss to
first order. The memory is replay's reservoir (:mod:`.replay`, ``replay/after-<i>.json``).

Term ``agem``: no loss of its own (it logs 1 when the previous step was projected, else 0, with
weight 0); its :meth:`~tunesmith.objectives.base.ObjectiveTerm.adjust_gradients` runs in the
loop between the backward passes and clipping. Method ``agem`` (``continual: {method: agem,
agem: {capacity, batch_size}}``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from tunesmith.configschema import fld
from tunesmith.errors import ConfigError
from tunesmith.objectives.base import register
from tunesmith.objectives.continual.base import SequenceView, register_method
from tunesmith.objectives.continual.replay import (
    ReplayMethod,
    ReplayTerm,
    memory_loss,
    write_encoded_buffer,
)
from tunesmith.objectives.continual.term import STATE_HELP, ContinualTerm, device_of

__all__ = ["AGEMMethod", "AGEMTerm", "agem_project"]


def agem_project(
    grads: Sequence[torch.Tensor], ref: Sequence[torch.Tensor]
) -> tuple[list[torch.Tensor], bool]:
    """A-GEM's projection of ``grads`` (one tensor per parameter) against ``ref``, the
    flattened vectors' dot products in float64. Returns (the new gradients, projected?)."""
    dot = sum(float((g.double() * r.double()).sum()) for g, r in zip(grads, ref, strict=True))
    norm = sum(float(r.double().pow(2).sum()) for r in ref)
    if dot >= 0 or norm == 0.0:
        return list(grads), False
    scale = dot / norm
    return [
        (g.double() - scale * r.double()).to(g.dtype) for g, r in zip(grads, ref, strict=True)
    ], True


class AGEMTerm(ReplayTerm):
    name = "agem"

    @dataclasses.dataclass
    class Params:
        state: str | None = fld(None, STATE_HELP)
        batch_size: int = fld(64, "memory examples drawn per step for the reference gradient")
        seed: int = fld(0, "seed of the memory draws")

    def __init__(self, weight: float = 0.0, params: Any = None):
        ContinualTerm.__init__(self, weight, params)
        if self.params.batch_size < 1:
            raise ConfigError(f"objectives.{self.name}.params.batch_size", "must be >= 1")
        self.generator = torch.Generator().manual_seed(self.params.seed)
        self.examples: list[dict] = []
        self.heads: list[dict[str, torch.Tensor]] = []
        self.projected = 0.0

    def loss(self, model, batch, outputs) -> torch.Tensor:
        """Not a loss: 1.0 when the previous step's gradient was projected (for the log)."""
        return torch.tensor(self.projected, device=device_of(model))

    def adjust_gradients(self, model: nn.Module, params: list[nn.Parameter]) -> None:
        params = [p for p in params if p.grad is not None]
        if not self.examples or not params:
            return
        chosen = self.draw(self.params.batch_size)
        ref_loss = memory_loss(model, self.task, self.heads, chosen, self.collator)
        ref = torch.autograd.grad(ref_loss, params, allow_unused=True)
        ref = [torch.zeros_like(p) if r is None else r for p, r in zip(params, ref, strict=True)]
        new, projected = agem_project([p.grad for p in params], ref)
        self.projected = float(projected)
        if projected:
            with torch.no_grad():
                for p, g in zip(params, new, strict=True):
                    p.grad.copy_(g)


class AGEMMethod(ReplayMethod):
    """A-GEM between stages: replay's reservoir, encoded for the reference gradients."""

    name = "agem"

    @dataclasses.dataclass
    class Params:
        capacity: int = fld(1000, "episodic memory size (examples over all earlier tasks)")
        batch_size: int = fld(64, "memory examples per step for the reference gradient")

        def validate(self, path: str) -> None:
            if self.capacity < 1:
                raise ConfigError(f"{path}.capacity", "must be >= 1")
            if self.batch_size < 1:
                raise ConfigError(f"{path}.batch_size", "must be >= 1")

    def terms(self, seq: SequenceView, k: int) -> list[dict[str, Any]]:
        params = {
            "state": str(seq.state_path(k)),
            "batch_size": self.params.batch_size,
            "seed": seq.seed + k,
        }
        return [{"name": "agem", "weight": 0.0, "params": params}]

    def update_state(self, state, previous, seq, model, i) -> None:
        state.replay_file = write_encoded_buffer(seq, i)

    def train_file(self, seq: SequenceView, k: int) -> str | None:
        return None  # the memory constrains the gradient; it is not trained on


register(
    AGEMTerm, "A-GEM: project the gradient off the memory's when they conflict (Chaudhry 2019)"
)
register_method(
    AGEMMethod, "A-GEM: gradient projection on an episodic memory (Chaudhry et al. 2019)"
)
