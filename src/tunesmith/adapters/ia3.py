"""(IA)^3: learned vectors that rescale activations of a frozen model.

Liu et al. 2022, "Few-Shot Parameter-Efficient Fine-Tuning is Better and Cheaper than In-Context
Learning" (NeurIPS), §3.3: keys and values of attention and the intermediate feed-forward
activation are multiplied element-wise by learned vectors ``l_k``, ``l_v``, ``l_ff`` (ones at
init). As in PEFT, a target layer ``y = W x + b`` gets either its *output* scaled,
``y' = l * (W x + b)`` with ``l: (out, 1)``, or -- for "feed-forward" targets, the second FFN
projection -- its *input*, ``y' = W (l * x) + b`` with ``l: (1, in)``. Both fold into ``W`` (and
``b`` for output scaling), so the adapter merges; unmerging divides, which is exact up to
rounding unless an entry of ``l`` is near zero.

The parameter is named ``ia3_l`` with PEFT's shapes, so :mod:`tunesmith.adapters.io` writes and
reads PEFT's files key for key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from tunesmith.adapters.base import (
    AdapterInfo,
    AdapterLayer,
    adapter_dtype,
    attach,
    first_input,
    replace_first_input,
)
from tunesmith.adapters.lora import linear_shape
from tunesmith.adapters.methods import AdapterMethod, PeftMapping, register
from tunesmith.adapters.targets import arch_targets, resolve_linear_targets
from tunesmith.configschema import fld
from tunesmith.errors import ConfigError

__all__ = ["IA3Config", "IA3Layer", "inject"]


@dataclass(frozen=True)
class IA3Config:
    """(IA)^3 (Liu et al. 2022): learned rescaling of keys, values and feed-forward activations."""

    method: ClassVar[str] = "ia3"

    type: Literal["ia3"] = fld("ia3", "(IA)^3 (Liu et al. 2022)")
    targets: list[str] | str | None = fld(
        None,
        "module names (as PEFT's target_modules), 'all-linear', a regex string, or null for "
        "the table default (keys, values, feed-forward output)",
    )
    feedforward: list[str] | str | None = fld(
        None,
        "targets whose input (not output) is scaled, as PEFT's feedforward_modules; null for the "
        "table default",
    )

    def validate(self, path: str = "adapter") -> None:
        if isinstance(self.targets, list) and not self.targets:
            raise ConfigError(f"{path}.targets", "is empty", "list module names or 'all-linear'")


class IA3Layer(AdapterLayer):
    """Scales a layer's output ``(..., out)`` by ``ia3_l: (out, 1)``, or for a feed-forward
    target its input ``(..., in)`` by ``ia3_l: (1, in)``."""

    no_decay = ("ia3_l",)  # a scale initialised at 1: decay would shrink activations

    def __init__(self, n_in: int, n_out: int, feedforward: bool, fan_in_fan_out: bool) -> None:
        super().__init__()
        self.feedforward = feedforward
        self.fan_in_fan_out = fan_in_fan_out
        self.ia3_l = nn.Parameter(torch.ones((1, n_in) if feedforward else (n_out, 1)))

    def pre(self, module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        if not self.feedforward:
            return None
        x = first_input(args, kwargs)
        scaled = (x.to(self.ia3_l.dtype) * self.ia3_l.flatten()).to(x.dtype)
        return replace_first_input(args, kwargs, scaled)

    def post(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
        if self.feedforward:
            return output
        return (output.to(self.ia3_l.dtype) * self.ia3_l.flatten()).to(output.dtype)

    def _weight_factor(self) -> torch.Tensor:
        """``ia3_l`` shaped to broadcast over the base weight (``(out, in)``; Conv1D ``(in, out)``)."""
        return self.ia3_l.T if self.fan_in_fan_out else self.ia3_l

    @torch.no_grad()
    def merge(self, module: nn.Module) -> None:
        module.weight.mul_(self._weight_factor().to(module.weight.dtype))
        if not self.feedforward and module.bias is not None:
            module.bias.mul_(self.ia3_l.flatten().to(module.bias.dtype))

    @torch.no_grad()
    def unmerge(self, module: nn.Module) -> None:
        module.weight.div_(self._weight_factor().to(module.weight.dtype))
        if not self.feedforward and module.bias is not None:
            module.bias.div_(self.ia3_l.flatten().to(module.bias.dtype))


def _is_feedforward(name: str, feedforward: str | list[str]) -> bool:
    # PEFT's rule (ia3/model.py): a plain suffix test, or a full regex match for a string
    if isinstance(feedforward, str):
        return re.fullmatch(feedforward, name) is not None
    return any(name.endswith(f) for f in feedforward)


def feedforward_names(model: nn.Module, config: IA3Config) -> list[str] | str:
    """The configured feed-forward targets, or the table default (PEFT's mapping)."""
    if config.feedforward is not None:
        return config.feedforward
    table = arch_targets(model)
    return list(table.ia3_feedforward) if table is not None else []


def inject(model: nn.Module, name: str, config: IA3Config) -> list[str]:
    """Add IA3 adapter ``name`` to the target layers of ``model``; return their names."""
    modules = dict(model.named_modules())
    device, dtype = adapter_dtype(model)
    targets = resolve_linear_targets(model, config.targets, "ia3", "adapter.targets")
    feedforward = feedforward_names(model, config)
    unused = []
    if isinstance(feedforward, list):
        unused = [f for f in feedforward if not any(t.endswith(f) for t in targets)]
    if unused:
        raise ConfigError(
            "adapter.feedforward",
            f"{unused} match no target module",
            "feed-forward modules must be among the targets (as in PEFT)",
        )
    for target in targets:
        n_in, n_out, fan_in_fan_out = linear_shape(modules[target])
        layer = IA3Layer(n_in, n_out, _is_feedforward(target, feedforward), fan_in_fan_out)
        attach(modules[target], name, layer.to(device, dtype))
    return targets


def _peft_fields(model: nn.Module, info: AdapterInfo) -> dict[str, Any]:
    """The IA3 fields of PEFT's ``adapter_config.json``: the feed-forward targets by full name."""
    ff = feedforward_names(model, info.config)
    if isinstance(ff, list):
        ff = sorted(m for m in info.modules if any(m.endswith(f) for f in ff))
    return {"feedforward_modules": ff, "init_ia3_weights": True}


def _from_peft(data: dict[str, Any]) -> IA3Config:
    return IA3Config(
        targets=data.get("target_modules"), feedforward=data.get("feedforward_modules") or []
    )


register(
    AdapterMethod(
        "ia3",
        inject,
        presets={
            "ia3": (
                IA3Config,
                "learned rescaling of keys, values and feed-forward activations; merges (Liu et "
                "al. 2022, Few-Shot Parameter-Efficient Fine-Tuning is Better and Cheaper than "
                "In-Context Learning)",
            )
        },
        mergeable=True,
        peft=PeftMapping(
            "IA3",
            "IA3",
            to_peft=_peft_fields,
            from_peft=_from_peft,
            unsupported={"exclude_modules": None},
        ),
    )
)
