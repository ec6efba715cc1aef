"""Online EWC (Schwarz et al. 2018, "Progress & Compress"): the term and the method.

Term ``online_ewc``: ``(lambda / 2) * sum_i gamma * F*_i (theta_i - theta*_i)^2`` with one
running Fisher ``F*_k = gamma * F*_{k-1} + F_k`` and ``theta*`` the weights after the previous
stage. Method ``online_ewc`` (preset ``online-ewc``; ``continual: {method: online_ewc,
online_ewc: {weight, gamma, fisher}}``) keeps the latest weights and updates the running Fisher
after each stage.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from tunesmith.configschema import fld
from tunesmith.errors import ConfigError
from tunesmith.objectives.base import register
from tunesmith.objectives.continual.base import (
    ContinualMethod,
    SequenceView,
    preset,
    register_method,
)
from tunesmith.objectives.continual.ewc import EWCTerm, check_weight, stage_weights
from tunesmith.objectives.continual.fisher import (
    FisherConfig,
    online_update,
    penalised_fisher,
    stage_fisher,
)
from tunesmith.objectives.continual.state import ContinualState
from tunesmith.objectives.continual.term import STATE_HELP

__all__ = ["OnlineEWCMethod", "OnlineEWCTerm"]

_GAMMA_HELP = "decay of the running Fisher: F* = gamma*F*_old + F_new (0..1]"


def _check_gamma(gamma: float, path: str) -> None:
    if not 0.0 <= gamma <= 1.0:
        raise ConfigError(path, f"must be in [0, 1], got {gamma}")


class OnlineEWCTerm(EWCTerm):
    name = "online_ewc"

    @dataclasses.dataclass
    class Params:
        state: str | None = fld(None, STATE_HELP)
        gamma: float = fld(1.0, _GAMMA_HELP)

    def __init__(self, weight: float = 1.0, params: Any = None):
        super().__init__(weight, params)
        _check_gamma(self.params.gamma, f"objectives.{self.name}.params.gamma")

    def penalties(self, state: ContinualState) -> list[tuple[dict | None, dict]]:
        anchor = state.latest_anchor()
        if not anchor or not state.online_fisher:
            return []
        gamma = self.params.gamma
        return [({n: gamma * f for n, f in state.online_fisher.items()}, anchor)]


class OnlineEWCMethod(ContinualMethod):
    """Online EWC between stages: the latest weights and one gamma-decayed running Fisher."""

    name = "online_ewc"

    @dataclasses.dataclass
    class Params:
        weight: float = fld(
            0.5, "lambda, the online_ewc term's weight (on the mean-1 Fisher, as ewc's)"
        )
        gamma: float = fld(1.0, "F* = gamma * F*_old + F_new (1: plain accumulation)")
        fisher: FisherConfig = fld(FisherConfig(), "diagonal Fisher estimation")

        def validate(self, path: str) -> None:
            check_weight(self.weight, path)
            _check_gamma(self.gamma, f"{path}.gamma")

    def terms(self, seq: SequenceView, k: int) -> list[dict[str, Any]]:
        params = {"state": str(seq.state_path(k)), "gamma": self.params.gamma}
        return [{"name": "online_ewc", "weight": self.params.weight, "params": params}]

    def update_state(self, state, previous, seq, model, i) -> None:
        anchor = stage_weights(seq, model, i)
        full = stage_fisher(seq, model, i, self.params.fisher)
        state.anchors = {seq.names[i]: anchor}
        fisher = penalised_fisher(full, anchor, self.params.fisher)
        state.online_fisher = online_update(previous.online_fisher, fisher, self.params.gamma)


register(OnlineEWCTerm, "online EWC: one gamma-decayed running Fisher (Schwarz et al. 2018)")
register_method(OnlineEWCMethod, "online EWC: one running Fisher (Schwarz et al. 2018)")
preset("online-ewc", "online_ewc")
