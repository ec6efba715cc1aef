"""O-LoRA's stacked LoRA: one LoRA per task on the same layers, the earlier ones frozen.

Wang et al. 2023, "Orthogonal Subspace Learning for Language Model Continual Learning" (EMNLP
Findings): task t learns a new LoRA ``(A_t, B_t)`` while the LoRAs of tasks ``0..t-1`` stay
frozen, and every one of them runs in the forward, summed::

    h = W x + (alpha / r) * sum_t B_t A_t x

so the model needs no task id at test time. The orthogonality loss between the new ``A`` and the
earlier ones is the continual method's (:mod:`tunesmith.objectives.continual.olora`); this module
is the adapter: ``adapter: {type: olora, r, alpha, targets, tasks}`` with ``tasks`` LoRA blocks,
the last one trainable (:meth:`AdapterLayer.frozen_parameters`). Parameter names:
``lora_A.<t>.weight`` (r, in) and ``lora_B.<t>.weight`` (out, r). :func:`grow_config` gives the
config with one more block (the sequence runner copies the old blocks into it).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from tunesmith.adapters.base import first_input
from tunesmith.adapters.lora import DeltaLayer, LoraConfig, inject_linear
from tunesmith.adapters.methods import AdapterMethod, register
from tunesmith.configschema import fld
from tunesmith.errors import ConfigError

__all__ = ["OLoraConfig", "OLoraLayer", "from_lora", "grow_config", "inject"]


@dataclass(frozen=True)
class OLoraConfig:
    """O-LoRA (Wang et al. 2023): ``tasks`` LoRA blocks summed, only the last one trains."""

    method: ClassVar[str] = "olora"

    type: Literal["olora"] = fld("olora", "O-LoRA: one LoRA per task, summed (Wang et al. 2023)")
    r: int = fld(8, "rank of each task's update B_t A_t")
    alpha: float = fld(8.0, "scale numerator: each update is multiplied by alpha / r")
    dropout: float = fld(0.0, "dropout on the input of the LoRA branches")
    targets: list[str] | str | None = fld(
        None, "module names, 'all-linear', a regex string, or null for the table default (LoRA's)"
    )
    use_rslora: bool = fld(False, "scale by alpha / sqrt(r) (rank-stabilised LoRA)")
    tasks: int = fld(1, "LoRA blocks (one per task so far); blocks 0..tasks-2 are frozen")

    def validate(self, path: str = "adapter") -> None:
        LoraConfig.validate(self, path)  # r, dropout, targets: each block is a LoRA
        if self.tasks < 1:
            raise ConfigError(f"{path}.tasks", f"must be >= 1, got {self.tasks}")

    scaling = LoraConfig.scaling  # alpha / r (or / sqrt(r)), as each block's LoRA


def from_lora(config: LoraConfig | OLoraConfig, tasks: int) -> OLoraConfig:
    """The O-LoRA config with ``tasks`` blocks of a LoRA (or O-LoRA) config's shape."""
    keep = {f.name: getattr(config, f.name) for f in dataclasses.fields(LoraConfig)}
    keep.pop("type")
    return OLoraConfig(**keep, tasks=tasks)


def grow_config(config: OLoraConfig) -> OLoraConfig:
    """One more block: the new task's, trainable; the old ones frozen."""
    return dataclasses.replace(config, tasks=config.tasks + 1)


class OLoraLayer(DeltaLayer):
    """``y = base(x) + scaling * sum_t B_t(A_t(dropout(x)))``; x (..., in), y (..., out)."""

    def __init__(self, n_in: int, n_out: int, config: OLoraConfig, fan_in_fan_out: bool) -> None:
        super().__init__()
        self.lora_A = nn.ModuleList(
            nn.Linear(n_in, config.r, bias=False) for _ in range(config.tasks)
        )
        self.lora_B = nn.ModuleList(
            nn.Linear(config.r, n_out, bias=False) for _ in range(config.tasks)
        )
        self.lora_dropout = nn.Dropout(config.dropout) if config.dropout else nn.Identity()
        self.scaling = config.scaling
        self.fan_in_fan_out = fan_in_fan_out
        with torch.no_grad():  # LoRA's init per block: A as nn.Linear's default, B = 0
            for a, b in zip(self.lora_A, self.lora_B, strict=True):
                nn.init.kaiming_uniform_(a.weight, a=math.sqrt(5))
                nn.init.zeros_(b.weight)

    def frozen_parameters(self) -> tuple[str, ...]:
        old = range(len(self.lora_A) - 1)
        return tuple(f"lora_{m}.{t}.weight" for t in old for m in "AB")

    def post(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
        x = self.lora_dropout(first_input(args, kwargs).to(self.lora_A[0].weight.dtype))
        update = sum(b(a(x)) for a, b in zip(self.lora_A, self.lora_B, strict=True))
        return output + (update * self.scaling).to(output.dtype)

    def delta_weight(self) -> torch.Tensor:
        """``scaling * sum_t B_t A_t`` laid out like the base weight (``(in, out)`` for Conv1D)."""
        delta = sum(b.weight @ a.weight for a, b in zip(self.lora_A, self.lora_B, strict=True))
        delta = delta * self.scaling
        return delta.T if self.fan_in_fan_out else delta


def inject(model: nn.Module, name: str, config: OLoraConfig) -> list[str]:
    """Add O-LoRA adapter ``name`` (``config.tasks`` blocks) to LoRA's target layers."""
    return inject_linear(model, name, config, OLoraLayer)


register(
    AdapterMethod(
        "olora",
        inject,
        presets={
            "olora": (
                OLoraConfig,
                "one LoRA per task summed, earlier ones frozen; merges "
                "(Wang et al. 2023, O-LoRA; with continual.method: olora)",
            )
        },
        mergeable=True,
    )
)
