"""L2-SP (Li, Grandvalet & Davoine 2018, "Explicit inductive bias for transfer learning with CNNs").

Penalise the distance of the fine-tuned weights from the *starting point* (the pretrained
weights) instead of from zero:  Omega(w) = sum_i ||w_i - w0_i||^2  over the pretrained, trainable
parameters. The newly initialised task head has no meaningful starting point and is excluded.
"""

from __future__ import annotations

import dataclasses

import torch

from tunesmith.configschema import fld
from tunesmith.objectives.base import ObjectiveTerm, register


class L2SP(ObjectiveTerm):
    name = "l2_sp"

    @dataclasses.dataclass
    class Params:
        exclude: list[str] = fld(
            ["classifier", "score", "qa_outputs"],
            "parameter-name substrings not anchored (new heads)",
        )

    def setup(self, model: torch.nn.Module) -> None:
        self.anchor = {
            name: p.detach().clone()
            for name, p in model.named_parameters()
            if p.requires_grad and not any(x in name for x in self.params.exclude)
        }

    def loss(self, model, batch, outputs) -> torch.Tensor:
        params = dict(model.named_parameters())
        device = next(iter(params.values())).device
        total = torch.zeros((), device=device)
        for name, w0 in self.anchor.items():
            total = total + (params[name].float() - w0.to(device).float()).pow(2).sum()
        return total

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.anchor)

    def load_state_dict(self, state) -> None:
        self.anchor = {k: v.clone() for k, v in state.items()}


register(L2SP, "L2-SP: pull weights towards their pretrained values (Li et al. 2018)")
