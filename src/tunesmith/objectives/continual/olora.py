"""O-LoRA, orthogonal subspace learning (Wang et al. 2023): the term and the method.

Wang et al. 2023, "Orthogonal Subspace Learning for Language Model Continual Learning". Each task
trains a new LoRA ``(A_k, B_k)`` while the earlier tasks' LoRAs stay frozen and keep running in
the forward (summed: no task id at test time; the ``olora`` adapter,
:mod:`tunesmith.adapters.olora`). The new ``A_k`` is pushed into a subspace orthogonal to the
earlier ones', at every adapted layer::

    L_orth = sum_layers sum_{t<k} sum_{i,j} (A_t A_k^T)_{ij}^2          (the paper's, squared)
    L_orth = sum_layers sum_{t<k} sum_{i,j} |A_t A_k^T|_{ij}            (orthogonality: abs,
                                                                          the reference code's)
    L_2    = sum_layers (||A_k||_F + ||B_k||_F)                         (the reference code's
                                                                          L2 on the new LoRA)

and the stage minimises ``task loss + lambda_1 L_orth + lambda_2 L_2`` (the term ``olora``, weight
1, holds both lambdas). ``A_t``: (r, in). Stage 0 trains the first block alone, without terms.

Method ``olora`` (``continual: {method: olora, olora: {weight, l2_weight, orthogonality}}``):
the recipe's ``adapter: {type: lora, ...}`` (or ``olora``) becomes stage k's
``{type: olora, ..., tasks: k+1}``; stage k starts from stage k-1's blocks plus a new one.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import torch
from torch import nn

from tunesmith.adapters import active_adapter, adapter_config_from_dict
from tunesmith.adapters.base import slots
from tunesmith.adapters.olora import OLoraLayer, from_lora
from tunesmith.configschema import fld, to_dict
from tunesmith.errors import ConfigError
from tunesmith.objectives.base import ObjectiveTerm, register
from tunesmith.objectives.continual.base import ContinualMethod, SequenceView, register_method
from tunesmith.objectives.continual.ewc import check_weight
from tunesmith.objectives.continual.term import device_of

__all__ = ["OLoRAMethod", "OLoRATerm", "l2_new", "orthogonality"]

Orth = Literal["squared", "abs"]


def orthogonality(
    old: list[torch.Tensor], new: torch.Tensor, kind: Orth = "squared"
) -> torch.Tensor:
    """``sum_t sum_ij f((A_t A_new^T)_ij)`` with f = square (the paper) or abs (the reference
    code); ``old``: the earlier tasks' A (r, in) each, ``new``: (r, in). A scalar (fp32)."""
    total = new.new_zeros((), dtype=torch.float32)
    for a in old:
        overlap = a.float() @ new.float().T  # (r, r)
        total = total + (overlap.pow(2) if kind == "squared" else overlap.abs()).sum()
    return total


def l2_new(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``||A||_F + ||B||_F`` of the new LoRA block (the reference code's L2 term)."""
    return a.float().norm() + b.float().norm()


def _layers(model: nn.Module) -> list[OLoraLayer]:
    name = active_adapter(model)
    return [s[name] for _, _, s in slots(model) if name in s and isinstance(s[name], OLoraLayer)]


class OLoRATerm(ObjectiveTerm):
    name = "olora"

    @dataclasses.dataclass
    class Params:
        orth_weight: float = fld(0.5, "lambda_1: weight of the orthogonality loss")
        l2_weight: float = fld(0.0, "lambda_2: weight of the L2 on the new LoRA")
        orthogonality: Orth = fld("squared", "squared: the paper's loss; abs: the reference code's")

    def setup(self, model: nn.Module) -> None:
        self.layers = _layers(model)
        if not self.layers:
            raise ConfigError(
                f"objectives.{self.name}",
                "the model has no active olora adapter",
                "use adapter: {type: olora} (continual.method: olora sets it)",
            )

    def loss(self, model, batch, outputs) -> torch.Tensor:
        """``lambda_1 L_orth + lambda_2 L_2`` summed over the adapted layers."""
        p = self.params
        total = torch.zeros((), device=device_of(model))
        for layer in self.layers:
            a, b = layer.lora_A, layer.lora_B
            new = a[-1].weight
            if p.orth_weight:
                old = [x.weight for x in a[:-1]]
                total = total + p.orth_weight * orthogonality(old, new, p.orthogonality)
            if p.l2_weight:
                total = total + p.l2_weight * l2_new(new, b[-1].weight)
        return total


class OLoRAMethod(ContinualMethod):
    """O-LoRA between stages: one more LoRA block per task, the earlier ones frozen."""

    name = "olora"
    needs_adapter = True

    @dataclasses.dataclass
    class Params:
        weight: float = fld(0.5, "lambda_1, the orthogonality loss's weight")
        l2_weight: float = fld(0.0, "lambda_2, the weight of the L2 on the new LoRA (0: off)")
        orthogonality: Orth = fld("squared", "squared: the paper's loss; abs: the reference code's")

        def validate(self, path: str) -> None:
            check_weight(self.weight, path)
            if self.l2_weight < 0:
                raise ConfigError(f"{path}.l2_weight", "must be >= 0")

    def stage_adapter(self, seq: SequenceView, k: int, adapter: Any) -> Any:
        spec = {"type": adapter} if isinstance(adapter, str) else dict(adapter)
        extra = {key: spec.pop(key) for key in ("name", "train_head") if key in spec}
        config = adapter_config_from_dict(spec, key="adapter")
        if config.method not in ("lora", "olora"):
            raise ConfigError("adapter.type", "continual.method olora needs a LoRA adapter")
        return {**to_dict(from_lora(config, k + 1)), **extra}

    def terms(self, seq: SequenceView, k: int) -> list[dict[str, Any]]:
        p = self.params
        params = {
            "orth_weight": p.weight,
            "l2_weight": p.l2_weight,
            "orthogonality": p.orthogonality,
        }
        return [{"name": "olora", "weight": 1.0, "params": params}]


register(OLoRATerm, "O-LoRA: orthogonality of the new LoRA's A to earlier tasks' (Wang 2023)")
register_method(OLoRAMethod, "O-LoRA: a LoRA per task in orthogonal subspaces (Wang et al. 2023)")
