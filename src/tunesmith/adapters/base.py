"""The mechanism every adapter method shares: per-module slots whose forward hooks run one adapter.

An adapted module (a ``Linear``, a ``Dropout``, a whole sub-layer) gets one child
:class:`AdapterSlot` under the attribute ``adapter_slot``: a ``ModuleDict`` from adapter name to
that adapter's :class:`AdapterLayer` at this module, plus one forward pre-hook and one forward
hook that hand the module's input/output to the *active* adapter's layer. Hence

* base parameter names never change (``...query.weight`` stays ``...query.weight``), so
  ``merge_and_unload`` gives back a plain transformers model and full checkpoints keep their keys;
* adapter parameters are ordinary submodules (``...query.adapter_slot.<name>.lora_A.weight``), so
  ``.to()``, ``state_dict()``, ``train()/eval()`` and optimisers see them with no extra code;
* disabling or switching adapters only changes which name each slot runs.

The model keeps an :class:`AdapterState` (names, configs, touched modules, active, merged) as the
plain attribute ``model._tunesmith_adapters``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from tunesmith.adapters.targets import SLOT
from tunesmith.errors import ConfigError

__all__ = [
    "AdapterInfo",
    "AdapterLayer",
    "AdapterSlot",
    "AdapterState",
    "adapter_dtype",
    "attach",
    "detach",
    "first_input",
    "hidden_size",
    "replace_first_input",
]

STATE_ATTR = "_tunesmith_adapters"


_INPUT_NAMES = ("hidden_states", "input", "x")


def first_input(args: tuple, kwargs: dict) -> torch.Tensor:
    """The main input of a module call (first positional, else ``hidden_states``/``input``/``x``)."""
    if args:
        return args[0]
    for key in _INPUT_NAMES:
        if key in kwargs:
            return kwargs[key]
    raise TypeError(f"cannot find the module input among {sorted(kwargs)}")


def replace_first_input(args: tuple, kwargs: dict, value: torch.Tensor) -> tuple[tuple, dict]:
    """``(args, kwargs)`` with the main input (see :func:`first_input`) replaced by ``value``."""
    if args:
        return (value, *args[1:]), kwargs
    key = next(k for k in _INPUT_NAMES if k in kwargs)
    return args, {**kwargs, key: value}


class AdapterLayer(nn.Module):
    """One named adapter's part at one module. Subclasses override the hooks they need.

    ``pre`` may return new ``(args, kwargs)`` for the module's forward; ``post`` returns the
    (possibly changed) output. Layers of mergeable methods (``AdapterMethod.mergeable``: LoRA,
    IA3) implement ``merge`` / ``unmerge``, which fold the layer into the module's own weights
    and back.
    """

    no_decay: ClassVar[tuple[str, ...]] = ()  # parameters weight decay must not pull to zero

    def frozen_parameters(self) -> tuple[str, ...]:
        """Parameters (names relative to the layer) that stay frozen when the adapter trains
        (:func:`~tunesmith.adapters.model.mark_trainable`): O-LoRA's earlier tasks' blocks."""
        return ()

    def pre(self, module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        return None

    def post(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
        return output

    def merge(self, module: nn.Module) -> None:
        raise NotImplementedError

    def unmerge(self, module: nn.Module) -> None:
        raise NotImplementedError


class AdapterSlot(nn.ModuleDict):
    """The adapters of one module, by name; its hooks run the active one unless it is merged."""

    def __init__(self) -> None:
        super().__init__()
        self.active: str | None = None
        self.merged: str | None = None

    def _current(self) -> AdapterLayer | None:
        if self.active is None or self.active == self.merged or self.active not in self:
            return None
        return self[self.active]

    def pre_hook(self, module: nn.Module, args: tuple, kwargs: dict) -> Any:
        layer = self._current()
        return None if layer is None else layer.pre(module, args, kwargs)

    def post_hook(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
        layer = self._current()
        return None if layer is None else layer.post(module, args, kwargs, output)


def attach(module: nn.Module, name: str, layer: AdapterLayer) -> None:
    """Add ``layer`` as adapter ``name`` of ``module`` (creating its slot and hooks once)."""
    slot = getattr(module, SLOT, None)
    if slot is None:
        slot = AdapterSlot()
        module.add_module(SLOT, slot)
        # bound methods of the slot: deepcopy / pickle of the model carry the hooks correctly
        module.register_forward_pre_hook(slot.pre_hook, with_kwargs=True)
        module.register_forward_hook(slot.post_hook, with_kwargs=True)
    slot[name] = layer


def detach(module: nn.Module, name: str) -> None:
    """Remove adapter ``name`` from ``module``; the slot and its hooks go with the last one."""
    slot = getattr(module, SLOT, None)
    if slot is None or name not in slot:
        return
    del slot[name]
    if len(slot):
        return
    # RemovableHandles would point at the original module after a deepcopy, so find by owner
    hook_dicts = [
        module._forward_pre_hooks,
        module._forward_pre_hooks_with_kwargs,
        module._forward_hooks,
        module._forward_hooks_with_kwargs,
        module._forward_hooks_always_called,
    ]
    ids = [
        i
        for d in (module._forward_pre_hooks, module._forward_hooks)
        for i, h in d.items()
        if getattr(h, "__self__", None) is slot
    ]
    for d in hook_dicts:
        for i in ids:
            d.pop(i, None)
    delattr(module, SLOT)


@dataclass
class AdapterInfo:
    """One named adapter of a model: its config and the modules it touched."""

    name: str
    config: Any
    modules: list[str]


@dataclass
class AdapterState:
    """All adapters of a model, which one runs, and which one is folded into the base weights."""

    adapters: dict[str, AdapterInfo] = field(default_factory=dict)
    active: str | None = None
    merged: str | None = None
    enabled: bool = True  # False inside disable_adapters

    def get(self, name: str) -> AdapterInfo:
        if name not in self.adapters:
            raise ConfigError(
                "adapter",
                f"the model has no adapter {name!r}",
                f"its adapters are {sorted(self.adapters) or 'none (call add_adapter first)'}",
            )
        return self.adapters[name]


def state_of(model: nn.Module, create: bool = False) -> AdapterState:
    """The model's :class:`AdapterState` (an empty one when it has none and ``create`` is False)."""
    state = model.__dict__.get(STATE_ATTR)
    if state is None:
        state = AdapterState()
        if create:
            model.__dict__[STATE_ATTR] = state
    return state


def slots(model: nn.Module) -> list[tuple[str, nn.Module, AdapterSlot]]:
    """(module name, module, slot) for every adapted module."""
    return [(n, m, getattr(m, SLOT)) for n, m in model.named_modules() if hasattr(m, SLOT)]


def hidden_size(model: nn.Module) -> int:
    config = model.config
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return int(text.hidden_size)


def adapter_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Device of the model and dtype for new adapter weights (float32 unless the base is float64:
    half-precision bases keep fp32 adapters, as PEFT does)."""
    p = next(model.parameters())
    return p.device, (torch.float64 if p.dtype == torch.float64 else torch.float32)
