"""EWC, Elastic Weight Consolidation (Kirkpatrick et al. 2017): the term and the method.

Term ``ewc`` (recipe ``objectives: [{name: ewc, weight: lambda, params: {state: ...}}]``):
``(lambda / 2) * sum_t sum_i F_t,i (theta_i - theta*_t,i)^2`` over every earlier task t, with
``F_t`` the diagonal Fisher at the end of task t and ``theta*_t`` the weights then. The per-task
quadratics are folded into one (:func:`~tunesmith.objectives.continual.penalty.merge_quadratics`),
so the memory is one task's however many came before.

Method ``ewc`` (``continual: {method: ewc, ewc: {weight, fisher}}``): after each stage, the
trained weights and their Fisher join those of the earlier tasks in the state of the next stage.
:class:`EWCTerm` is also the base of the other quadratic penalties (online EWC, L2 anchor), which
only choose other (Fisher, anchor) pairs.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from tunesmith.configschema import fld
from tunesmith.errors import ConfigError
from tunesmith.objectives.base import register
from tunesmith.objectives.continual.base import (
    ContinualMethod,
    SequenceView,
    register_method,
)
from tunesmith.objectives.continual.fisher import FisherConfig, penalised_fisher, stage_fisher
from tunesmith.objectives.continual.penalty import merge_quadratics, quadratic_penalty
from tunesmith.objectives.continual.state import ContinualState
from tunesmith.objectives.continual.term import STATE_HELP, ContinualTerm, device_of, usable

__all__ = ["EWCMethod", "EWCTerm", "check_weight", "stage_weights"]


class EWCTerm(ContinualTerm):
    name = "ewc"

    @dataclasses.dataclass
    class Params:
        state: str | None = fld(None, STATE_HELP)

    fisher: dict[str, torch.Tensor] | None = None
    anchor: dict[str, torch.Tensor]
    const: float = 0.0

    def __init__(self, weight: float = 1.0, params: Any = None):
        super().__init__(weight, params)
        self.anchor = {}
        self._on: torch.device | None = None

    def penalties(self, state: ContinualState) -> list[tuple[dict | None, dict]]:
        """(Fisher, anchor) per earlier task."""
        return [(state.fishers[t], state.anchors[t]) for t in state.seen if t in state.fishers]

    def setup(self, model: nn.Module) -> None:
        pairs = []
        for fisher, anchor in self.penalties(self.continual_state()):
            if fisher is not None:
                anchor = {n: a for n, a in anchor.items() if n in fisher}
            anchor = usable(model, anchor, self.name)
            fisher = {n: fisher[n] for n in anchor} if fisher is not None else None
            pairs.append((fisher, anchor))
        self.fisher, self.anchor, self.const = merge_quadratics(pairs)
        self._on = None

    def _move(self, device: torch.device) -> None:
        """Move the state to the parameters' device once (not every step)."""
        if self._on != device:
            self.anchor = {n: t.to(device, torch.float32) for n, t in self.anchor.items()}
            if self.fisher is not None:
                self.fisher = {n: t.to(device, torch.float32) for n, t in self.fisher.items()}
            self._on = device

    def loss(self, model, batch, outputs) -> torch.Tensor:
        if not self.anchor:
            return torch.zeros((), device=device_of(model))
        self._move(device_of(model))
        # c belongs to the un-halved sum: 0.5 * (sum A (theta - m)^2 + c)
        return quadratic_penalty(model, self.fisher, self.anchor) + 0.5 * self.const

    def state_dict(self) -> dict[str, torch.Tensor]:
        out = {f"anchor.{n}": t for n, t in self.anchor.items()}
        if self.fisher is not None:
            out |= {f"fisher.{n}": t for n, t in self.fisher.items()}
        out["const"] = torch.tensor(self.const, dtype=torch.float64)
        return out

    def load_state_dict(self, state) -> None:
        self.anchor = {k[7:]: v.clone() for k, v in state.items() if k.startswith("anchor.")}
        fisher = {k[7:]: v.clone() for k, v in state.items() if k.startswith("fisher.")}
        self.fisher = fisher or None
        self.const = float(state["const"]) if "const" in state else 0.0
        self._on = None


def check_weight(weight: float, path: str) -> None:
    if weight < 0:
        raise ConfigError(f"{path}.weight", "must be >= 0")


def stage_weights(seq: SequenceView, model: nn.Module, i: int) -> dict[str, torch.Tensor]:
    """A CPU copy of what stage i trained (theta*_i): the anchor of the quadratic penalties."""
    return {n: p.detach().cpu().clone() for n, p in seq.trainable(model, i).items()}


class EWCMethod(ContinualMethod):
    """EWC between stages: keep every finished task's weights and diagonal Fisher."""

    name = "ewc"

    @dataclasses.dataclass
    class Params:
        weight: float = fld(
            0.5,
            "lambda, the ewc term's weight (on the mean-1 Fisher of fisher.normalize: mean; "
            "docs/continual.md 'How to choose lambda')",
        )
        fisher: FisherConfig = fld(FisherConfig(), "diagonal Fisher estimation")

        def validate(self, path: str) -> None:
            check_weight(self.weight, path)

    def terms(self, seq: SequenceView, k: int) -> list[dict[str, Any]]:
        params = {"state": str(seq.state_path(k))}
        return [{"name": "ewc", "weight": self.params.weight, "params": params}]

    def update_state(self, state, previous, seq, model, i) -> None:
        name = seq.names[i]
        anchor = stage_weights(seq, model, i)
        full = stage_fisher(seq, model, i, self.params.fisher)
        state.anchors = {**previous.anchors, name: anchor}
        fisher = penalised_fisher(full, anchor, self.params.fisher)
        state.fishers = {**previous.fishers, name: fisher}


register(
    EWCTerm, "EWC: (lambda/2) sum F_t (theta - theta*_t)^2 over earlier tasks (Kirkpatrick 2017)"
)
register_method(EWCMethod, "EWC: a Fisher-weighted anchor per finished task (Kirkpatrick 2017)")
