"""The L2 anchor: ``(lambda / 2) * sum_i (theta_i - theta*_i)^2`` towards the previous stage.

EWC with F = 1 (L2-SP's penalty, but anchored to the last stage instead of the pretrained
weights, and with EWC's 1/2). Method ``l2_anchor`` (``continual: {method: l2_anchor,
l2_anchor: {weight}}``) keeps the weights after each stage.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from tunesmith.configschema import fld
from tunesmith.objectives.base import register
from tunesmith.objectives.continual.base import ContinualMethod, SequenceView, register_method
from tunesmith.objectives.continual.ewc import EWCTerm, check_weight, stage_weights
from tunesmith.objectives.continual.state import ContinualState

__all__ = ["L2AnchorMethod", "L2AnchorTerm"]


class L2AnchorTerm(EWCTerm):
    name = "l2_anchor"

    def penalties(self, state: ContinualState) -> list[tuple[dict | None, dict]]:
        anchor = state.latest_anchor()
        return [(None, anchor)] if anchor else []


class L2AnchorMethod(ContinualMethod):
    """The L2 anchor between stages: keep the weights of the stage just finished."""

    name = "l2_anchor"

    @dataclasses.dataclass
    class Params:
        weight: float = fld(0.01, "lambda, the l2_anchor term's weight")

        def validate(self, path: str) -> None:
            check_weight(self.weight, path)

    def terms(self, seq: SequenceView, k: int) -> list[dict[str, Any]]:
        params = {"state": str(seq.state_path(k))}
        return [{"name": "l2_anchor", "weight": self.params.weight, "params": params}]

    def update_state(self, state, previous, seq, model, i) -> None:
        state.anchors = {seq.names[i]: stage_weights(seq, model, i)}


register(L2AnchorTerm, "L2 anchor: (lambda/2) ||theta - theta*||^2 to the previous stage's weights")
register_method(L2AnchorMethod, "L2 anchor: (lambda/2) ||theta - theta*||^2 to the last stage")
