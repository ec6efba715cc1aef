"""LoRA: a trainable low-rank update beside a frozen linear layer.

Hu et al. 2022, "LoRA: Low-Rank Adaptation of Large Language Models" (ICLR), Eq. 3:
``h = W x + (alpha / r) * B A x`` with ``A: (r, in)``, ``B: (out, r)``, ``A`` Kaiming-uniform and
``B = 0`` at init, so training starts from the base model. ``use_rslora`` scales by
``alpha / sqrt(r)`` instead (Kalajdzievski 2023, "A Rank Stabilization Scaling Factor for
Fine-Tuning with LoRA"). Merging adds ``(alpha / r) B A`` to ``W`` (transposed for GPT-2's
``Conv1D``, whose weight is ``(in, out)``: PEFT's ``fan_in_fan_out``); unmerging subtracts it.

Parameter names and init match PEFT's ``lora.Linear`` (``lora_A``, ``lora_B``), so
:mod:`tunesmith.adapters.io` writes and reads PEFT's files key for key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from tunesmith.adapters.base import AdapterInfo, AdapterLayer, adapter_dtype, attach, first_input
from tunesmith.adapters.methods import AdapterMethod, PeftMapping, register
from tunesmith.adapters.targets import resolve_linear_targets
from tunesmith.configschema import fld
from tunesmith.errors import ConfigError

__all__ = [
    "LORA_UNSUPPORTED",
    "LoraConfig",
    "LoraLayer",
    "inject",
    "linear_shape",
    "lora_fields_from_peft",
    "lora_peft_fields",
]


@dataclass(frozen=True)
class LoraConfig:
    """LoRA (Hu et al. 2022): ``W x + (alpha / r) B A x`` on the target linear layers."""

    method: ClassVar[str] = "lora"

    type: Literal["lora"] = fld("lora", "LoRA (Hu et al. 2022)")
    r: int = fld(8, "rank of the update B A")
    alpha: float = fld(8.0, "scale numerator: the update is multiplied by alpha / r")
    dropout: float = fld(0.0, "dropout on the input of the LoRA branch")
    targets: list[str] | str | None = fld(
        None,
        "module names (a name or dotted suffix, as PEFT's target_modules), 'all-linear' "
        "(every linear layer but the task head), a regex string, or null for the table default",
    )
    use_rslora: bool = fld(False, "scale by alpha / sqrt(r) (rank-stabilised LoRA)")

    def validate(self, path: str = "adapter") -> None:
        if self.r < 1:
            raise ConfigError(f"{path}.r", f"must be >= 1, got {self.r}", "8 or 16 is typical")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"{path}.dropout", f"must be in [0, 1), got {self.dropout}")
        if isinstance(self.targets, list) and not self.targets:
            raise ConfigError(f"{path}.targets", "is empty", "list module names or 'all-linear'")

    @property
    def scaling(self) -> float:
        return self.alpha / (math.sqrt(self.r) if self.use_rslora else self.r)


def linear_shape(module: nn.Module) -> tuple[int, int, bool]:
    """(in_features, out_features, fan_in_fan_out) of an ``nn.Linear`` or GPT-2 ``Conv1D``."""
    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features, False
    if isinstance(module, Conv1D):
        n_in, n_out = module.weight.shape  # Conv1D stores W as (in, out): y = x W + b
        return n_in, n_out, True
    raise TypeError(f"{type(module).__name__} is not nn.Linear or Conv1D")


class DeltaLayer(AdapterLayer):
    """A layer whose whole effect is an additive weight delta (LoRA, O-LoRA): merging adds
    :meth:`delta_weight` to the module's weight, unmerging subtracts it."""

    def delta_weight(self) -> torch.Tensor:
        """The delta laid out like the base weight: ``(out, in)``, or ``(in, out)`` for Conv1D."""
        raise NotImplementedError

    @torch.no_grad()
    def merge(self, module: nn.Module) -> None:
        module.weight.add_(self.delta_weight().to(module.weight.dtype))

    @torch.no_grad()
    def unmerge(self, module: nn.Module) -> None:
        module.weight.sub_(self.delta_weight().to(module.weight.dtype))


class LoraLayer(DeltaLayer):
    """``y = base(x) + scaling * lora_B(lora_A(dropout(x)))`` for ``x: (..., in)``, ``y: (..., out)``."""

    def __init__(self, n_in: int, n_out: int, config: LoraConfig, fan_in_fan_out: bool) -> None:
        super().__init__()
        self.lora_A = nn.Linear(n_in, config.r, bias=False)  # (r, in)
        self.lora_B = nn.Linear(config.r, n_out, bias=False)  # (out, r)
        self.lora_dropout = nn.Dropout(config.dropout) if config.dropout else nn.Identity()
        self.scaling = config.scaling
        self.fan_in_fan_out = fan_in_fan_out
        with torch.no_grad():  # PEFT's init: A as nn.Linear's default, B = 0
            nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
            nn.init.zeros_(self.lora_B.weight)

    def post(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
        x = first_input(args, kwargs).to(self.lora_A.weight.dtype)
        update = self.lora_B(self.lora_A(self.lora_dropout(x))) * self.scaling
        return output + update.to(output.dtype)

    def delta_weight(self) -> torch.Tensor:
        """``scaling * B A`` laid out like the base weight: ``(out, in)``, or ``(in, out)`` for Conv1D."""
        delta = (self.lora_B.weight @ self.lora_A.weight) * self.scaling
        return delta.T if self.fan_in_fan_out else delta


def inject_linear(model: nn.Module, name: str, config: Any, layer_cls: type) -> list[str]:
    """Add adapter ``name`` to the linear layers ``config.targets`` names (LoRA's defaults per
    architecture), a ``layer_cls(n_in, n_out, config, fan_in_fan_out)`` at each; return their
    names."""
    modules = dict(model.named_modules())
    device, dtype = adapter_dtype(model)
    targets = resolve_linear_targets(model, config.targets, "lora", "adapter.targets")
    for target in targets:
        n_in, n_out, fan_in_fan_out = linear_shape(modules[target])
        layer = layer_cls(n_in, n_out, config, fan_in_fan_out)
        attach(modules[target], name, layer.to(device, dtype))
    return targets


def inject(model: nn.Module, name: str, config: LoraConfig) -> list[str]:
    """Add LoRA adapter ``name`` to the target layers of ``model``; return their names."""
    return inject_linear(model, name, config, LoraLayer)


# PEFT LoraConfig fields we do not implement, with the value that means "not used"
LORA_UNSUPPORTED = {
    "use_dora": False,
    "lora_bias": False,
    "bias": "none",
    "layers_to_transform": None,
    "rank_pattern": {},
    "alpha_pattern": {},
    "exclude_modules": None,
    "target_parameters": None,
    "trainable_token_indices": None,
    "layer_replication": None,
    "use_qalora": False,
    "alora_invocation_tokens": None,
}


def lora_peft_fields(model: nn.Module, info: AdapterInfo) -> dict[str, Any]:
    """The LoRA fields of PEFT's ``adapter_config.json`` for ``info.config``."""
    config = info.config
    return {
        "r": config.r,
        "lora_alpha": config.alpha,
        "lora_dropout": config.dropout,
        "use_rslora": config.use_rslora,
        "init_lora_weights": True,
        "layers_pattern": None,
    }


def lora_fields_from_peft(data: dict[str, Any]) -> dict[str, Any]:
    """:class:`LoraConfig` keyword arguments from PEFT's ``adapter_config.json``."""
    return dict(
        r=int(data["r"]),
        alpha=float(data.get("lora_alpha", 8)),
        dropout=float(data.get("lora_dropout") or 0.0),
        targets=data.get("target_modules"),
        use_rslora=bool(data.get("use_rslora", False)),
    )


register(
    AdapterMethod(
        "lora",
        inject,
        presets={
            "lora": (
                LoraConfig,
                "low-rank update W + (alpha/r) B A on linear layers; merges (Hu et al. 2022, LoRA)",
            )
        },
        mergeable=True,
        peft=PeftMapping(
            "LORA",
            "LoRA",
            to_peft=lora_peft_fields,
            from_peft=lambda data: LoraConfig(**lora_fields_from_peft(data)),
            unsupported=LORA_UNSUPPORTED,
            supported_hint="plain LoRA with optional rsLoRA scaling only",
        ),
    )
)
