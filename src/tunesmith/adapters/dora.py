"""DoRA: LoRA on the direction of each weight row, with a learned magnitude.

Liu et al. 2024, "DoRA: Weight-Decomposed Low-Rank Adaptation" (ICML), Eq. 5: a linear layer's
weight ``W: (out, in)`` becomes

    W' = m * (W + s B A) / ||W + s B A||_c

with LoRA's ``A: (r, in)``, ``B: (out, r)``, ``s = alpha / r`` (or ``alpha / sqrt(r)``) and a
trainable magnitude ``m: (out,)`` initialised to ``||W||_c``, so training starts from the base
model (``B = 0``). ``||.||_c`` is the norm of each output row over the input dimension (the
paper's column-wise norm of ``W^T``; PEFT's ``torch.linalg.norm(W, dim=1)``). Following §4.3, the
norm is treated as a constant in backward (detached): it follows ``B A`` in forward, but gets no
gradient, which saves memory at no measurable loss.

Forward, as PEFT computes it (``tuners/lora/dora.py``), from the base output ``y = W x + b``::

    y' = y + (m / n - 1) * (W x) + (m / n) * s * B A x,   n = ||W + s B A||_c (detached)

which is ``W' x + b`` with ``x: (..., in)``, ``y: (..., out)``. Merging writes ``W'`` into the
base weight (``(in, out)`` for GPT-2's ``Conv1D``); unmerging divides by the merge-time
``m / n`` and subtracts ``s B A``. Parameter names are PEFT's (``lora_A``, ``lora_B``,
``lora_magnitude_vector``), so the files are PEFT's LoRA files with ``use_dora: true``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from tunesmith.adapters.base import adapter_dtype, attach, first_input
from tunesmith.adapters.lora import (
    LORA_UNSUPPORTED,
    LoraConfig,
    LoraLayer,
    linear_shape,
    lora_fields_from_peft,
    lora_peft_fields,
)
from tunesmith.adapters.methods import AdapterMethod, PeftMapping, register
from tunesmith.adapters.targets import resolve_linear_targets
from tunesmith.configschema import fld

__all__ = ["DoraConfig", "DoraLayer", "inject"]


@dataclass(frozen=True)
class DoraConfig(LoraConfig):
    """DoRA (Liu et al. 2024): LoRA on the weight's direction plus a learned magnitude per
    output; the same keys as LoRA (``r``, ``alpha``, ``dropout``, ``targets``, ``use_rslora``)."""

    method: ClassVar[str] = "dora"

    type: Literal["dora"] = fld("dora", "DoRA (Liu et al. 2024)")


class DoraLayer(LoraLayer):
    """LoRA's ``lora_A``/``lora_B`` plus ``lora_magnitude_vector: (out,)``; see the module doc."""

    no_decay = ("lora_magnitude_vector",)  # a norm-sized scale: decay would shrink the weights

    def __init__(self, module: nn.Module, config: DoraConfig) -> None:
        n_in, n_out, fan_in_fan_out = linear_shape(module)
        super().__init__(n_in, n_out, config, fan_in_fan_out)
        self.lora_magnitude_vector = nn.Parameter(torch.ones(n_out))
        self._merged_norm: torch.Tensor | None = None  # n at merge time, for unmerge

    def _base_weight(self, module: nn.Module) -> torch.Tensor:
        """The base weight as ``(out, in)``, in the adapter's dtype."""
        weight = module.weight.T if self.fan_in_fan_out else module.weight
        return weight.to(self.lora_A.weight.dtype)

    def lora_weight(self) -> torch.Tensor:
        """``B A``: ``(out, in)``, computed through the layers as PEFT does (same rounding)."""
        n_in = self.lora_A.weight.shape[1]
        eye = torch.eye(n_in, device=self.lora_A.weight.device, dtype=self.lora_A.weight.dtype)
        return self.lora_B(self.lora_A(eye)).T

    def weight_norm(self, module: nn.Module) -> torch.Tensor:
        """``n = ||W + s B A||_c``: ``(out,)``, detached (DoRA §4.3)."""
        weight = self._base_weight(module) + self.scaling * self.lora_weight().detach()
        return torch.linalg.norm(weight, dim=1).to(weight.dtype).detach()

    @torch.no_grad()
    def init_magnitude(self, module: nn.Module) -> None:
        """``m = ||W + s B A||_c`` (``= ||W||_c`` at init, ``B = 0``): the output starts unchanged."""
        self.lora_magnitude_vector.copy_(self.weight_norm(module))

    def post(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
        x = first_input(args, kwargs).to(self.lora_A.weight.dtype)
        scale = (self.lora_magnitude_vector / self.weight_norm(module)).view(1, -1)  # (1, out)
        if isinstance(self.lora_dropout, nn.Identity) or not self.training:
            base = output.to(x.dtype)  # W x + b, from the module itself
            if module.bias is not None:
                base = base - module.bias.to(x.dtype)
        else:  # dropout: the base term must see the same dropped input as the LoRA branch
            x = self.lora_dropout(x)
            base = F.linear(x, self._base_weight(module))
        update = (scale - 1) * base + scale * self.lora_B(self.lora_A(x)) * self.scaling
        return output + update.to(output.dtype)

    @torch.no_grad()
    def merge(self, module: nn.Module) -> None:
        weight = self._base_weight(module) + self._delta()
        self._merged_norm = torch.linalg.norm(weight, dim=1)
        factor = (self.lora_magnitude_vector / self._merged_norm).view(-1, 1)
        self._write(module, factor * weight)

    @torch.no_grad()
    def unmerge(self, module: nn.Module) -> None:
        if self._merged_norm is None:
            raise RuntimeError("DoRA adapter was not merged")
        factor = (self.lora_magnitude_vector / self._merged_norm).view(-1, 1)
        self._write(module, self._base_weight(module) / factor - self._delta())
        self._merged_norm = None

    def _delta(self) -> torch.Tensor:
        """``s B A`` as ``(out, in)``."""
        return (self.lora_B.weight @ self.lora_A.weight) * self.scaling

    def _write(self, module: nn.Module, weight: torch.Tensor) -> None:
        """Store an ``(out, in)`` weight in the module's layout and dtype."""
        weight = weight.T if self.fan_in_fan_out else weight
        module.weight.copy_(weight.to(module.weight.dtype))


def inject(model: nn.Module, name: str, config: DoraConfig) -> list[str]:
    """Add DoRA adapter ``name`` to the target layers of ``model`` (LoRA's defaults per
    architecture); return their names."""
    modules = dict(model.named_modules())
    device, dtype = adapter_dtype(model)
    targets = resolve_linear_targets(model, config.targets, "lora", "adapter.targets")
    for target in targets:
        layer = DoraLayer(modules[target], config).to(device, dtype)
        layer.init_magnitude(modules[target])
        attach(modules[target], name, layer)
    return targets


register(
    AdapterMethod(
        "dora",
        inject,
        presets={
            "dora": (
                DoraConfig,
                "weight-decomposed LoRA: a learned magnitude per output times the direction of "
                "W + (alpha/r) B A; merges (Liu et al. 2024, DoRA)",
            )
        },
        mergeable=True,
        peft=PeftMapping(
            "LORA",
            "DoRA",
            to_peft=lora_peft_fields,
            from_peft=lambda data: DoraConfig(**lora_fields_from_peft(data)),
            unsupported={k: v for k, v in LORA_UNSUPPORTED.items() if k != "use_dora"},
            selects={"use_dora": True},
            supported_hint="DoRA on linear layers with optional rsLoRA scaling only",
        ),
    )
)
