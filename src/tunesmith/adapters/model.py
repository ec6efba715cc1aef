"""Model-level adapter API: add, activate, disable, delete, train, merge, unload.

Several named adapters can live on one base model; one is active at a time (or none: the base
model). Every function takes the plain transformers model (not an accelerate/DDP wrapper).

Typical use::

    add_adapter(model, "sst2", HoulsbyConfig())       # injects, activates, returns module names
    mark_trainable(model, "sst2", train_head=True)    # only the adapter (+ head) requires grad
    ...train...
    with disable_adapters(model):                     # the base model's outputs
        ...
    merge_and_unload(model)                           # LoRA/IA3: fold in, plain model back
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

from tunesmith.adapters.base import STATE_ATTR, AdapterInfo, detach, slots, state_of
from tunesmith.adapters.methods import ADAPTERS, METHODS, method_of
from tunesmith.adapters.targets import SLOT, head_modules
from tunesmith.errors import ConfigError, ModelError
from tunesmith.models import count_parameters

__all__ = [
    "active_adapter",
    "adapter_parameters",
    "adapter_state_dict",
    "add_adapter",
    "delete_adapter",
    "disable_adapters",
    "enable_adapters",
    "head_parameters",
    "list_adapters",
    "load_adapter_state_dict",
    "mark_trainable",
    "merge_adapter",
    "frozen_parameters",
    "no_decay_parameters",
    "merge_and_unload",
    "set_active_adapter",
    "trainable_summary",
    "unmerge_adapter",
]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def add_adapter(model: nn.Module, name: str, config: Any) -> list[str]:
    """Inject adapter ``name`` built from ``config`` and make it the active one.

    ``config`` is a method config (:class:`~tunesmith.adapters.HoulsbyConfig`,
    :class:`~tunesmith.adapters.LoraConfig`, ...; see ``adapter_config_from_dict``). Returns the
    names of the modules it hooks. Base weights and their names are not changed.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(
            "adapter.name", f"invalid adapter name {name!r}", "use letters, digits, _ or -"
        )
    state = state_of(model, create=True)
    if name in state.adapters:
        raise ConfigError(
            "adapter.name",
            f"the model already has an adapter {name!r}",
            "delete_adapter it first or choose another name",
        )
    if state.merged is not None:
        raise ModelError(
            f"adapter {state.merged!r} is merged into the base weights; "
            "unmerge_adapter before adding another"
        )
    method = method_of(config)
    try:
        touched = method.inject(model, name, config)
    except BaseException:
        for _, module, _ in slots(model):
            detach(module, name)  # leave no half-injected adapter behind
        raise
    if isinstance(touched, tuple):  # the config as injection resolved it (fusion's members)
        touched, config = touched
    state.adapters[name] = AdapterInfo(name, config, touched)
    set_active_adapter(model, name)
    return touched


def list_adapters(model: nn.Module) -> list[str]:
    """Adapter names in the order they were added."""
    return list(state_of(model).adapters)


def active_adapter(model: nn.Module) -> str | None:
    """The adapter that runs in forward, or None (no adapter, or adapters disabled)."""
    state = state_of(model)
    return state.active if state.enabled else None


def _run(model: nn.Module, name: str | None) -> None:
    for _, _, slot in slots(model):
        slot.active = name


def set_active_adapter(model: nn.Module, name: str | None) -> None:
    """Run adapter ``name`` in forward (None: run none, the base model); enables adapters."""
    state = state_of(model)
    if name is not None:
        state.get(name)
    if state.merged is not None and name != state.merged:
        raise ModelError(
            f"adapter {state.merged!r} is merged into the base weights; "
            "unmerge_adapter before switching to another"
        )
    state.active, state.enabled = name, True
    _run(model, name)


def enable_adapters(model: nn.Module) -> None:
    """Undo :func:`disable_adapters`: the active adapter runs again."""
    state = state_of(model)
    state.enabled = True
    _run(model, state.active)


class disable_adapters:  # noqa: N801 - used like a function and as a context manager
    """Run the base model: ``disable_adapters(model)`` until :func:`enable_adapters`, or
    ``with disable_adapters(model): ...`` for a block. Refused while an adapter is merged."""

    def __init__(self, model: nn.Module) -> None:
        state = state_of(model)
        if state.merged is not None:
            raise ModelError(
                f"adapter {state.merged!r} is merged into the base weights, so "
                "disabling cannot give the base model; unmerge_adapter first"
            )
        self.model = model
        self.was_enabled = state.enabled
        state.enabled = False
        _run(model, None)

    def __enter__(self) -> nn.Module:
        return self.model

    def __exit__(self, *exc: object) -> None:
        if self.was_enabled:
            enable_adapters(self.model)


def delete_adapter(model: nn.Module, name: str) -> None:
    """Remove adapter ``name`` and its parameters; if it was active, no adapter runs after."""
    state = state_of(model)
    state.get(name)
    if state.merged == name:
        raise ModelError(f"adapter {name!r} is merged into the base weights; unmerge_adapter first")
    for _, module, _ in slots(model):
        detach(module, name)
    del state.adapters[name]
    if state.active == name:
        state.active = None


def _is_adapter_param(param_name: str, name: str | None = None) -> bool:
    marker = f".{SLOT}." if name is None else f".{SLOT}.{name}."
    return marker in f".{param_name}"


def adapter_parameters(model: nn.Module, name: str) -> dict[str, nn.Parameter]:
    """Full parameter name -> parameter, for adapter ``name``."""
    state_of(model).get(name)
    return {n: p for n, p in model.named_parameters() if _is_adapter_param(n, name)}


def head_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """The task head's parameters (``transfer.layer_layout(model).head``; an untied output layer)."""
    heads = head_modules(model)
    return {
        n: p
        for n, p in model.named_parameters()
        if not _is_adapter_param(n) and any(n.startswith(h + ".") for h in heads)
    }


def no_decay_parameters(model: nn.Module) -> set[str]:
    """Adapter parameter names to keep out of weight decay (IA3's scales, which start at 1 and
    would decay towards 0; ``optim.param_groups`` already skips every ``ndim < 2`` tensor)."""
    names = set()
    for module_name, _, slot in slots(model):
        for adapter, layer in slot.items():
            prefix = f"{module_name}.{SLOT}.{adapter}." if module_name else f"{SLOT}.{adapter}."
            names |= {prefix + p for p in layer.no_decay}
    return names


def frozen_parameters(model: nn.Module, name: str) -> set[str]:
    """Parameter names of adapter ``name`` its layers keep frozen while it trains
    (``AdapterLayer.frozen_parameters``: O-LoRA's earlier tasks' blocks)."""
    names = set()
    for module_name, _, slot in slots(model):
        if name in slot:
            prefix = f"{module_name}.{SLOT}.{name}." if module_name else f"{SLOT}.{name}."
            names |= {prefix + p for p in slot[name].frozen_parameters()}
    return names


def mark_trainable(model: nn.Module, name: str, train_head: bool = False) -> list[str]:
    """Make adapter ``name`` active and the only trainable part (plus the task head if
    ``train_head``); every other parameter gets ``requires_grad=False``. Returns the trainable
    names. Call before building the optimizer (and before ``transfer.apply_freezing``, which only
    freezes)."""
    set_active_adapter(model, name)
    wanted = set(adapter_parameters(model, name)) - frozen_parameters(model, name)
    if train_head:
        wanted |= set(head_parameters(model))
    for n, p in model.named_parameters():
        p.requires_grad_(n in wanted)
    return [n for n, p in model.named_parameters() if p.requires_grad]


def _strip(param_name: str, name: str) -> str:
    """``a.b.adapter_slot.<name>.lora_A.weight`` -> ``a.b.lora_A.weight`` (name-free, PEFT-like)."""
    return f".{param_name}".replace(f".{SLOT}.{name}.", ".", 1)[1:]


def adapter_state_dict(
    model: nn.Module, name: str, include_head: bool = False
) -> dict[str, torch.Tensor]:
    """Adapter ``name``'s tensors under name-free keys (``<module>.<param>``, e.g.
    ``bert.encoder.layer.0.attention.self.query.lora_A.weight``), plus the head's parameters
    under their own names if ``include_head``. Tensors are detached views, not copies."""
    out = {_strip(n, name): p.detach() for n, p in adapter_parameters(model, name).items()}
    if include_head:
        out.update({n: p.detach() for n, p in head_parameters(model).items()})
    return out


def load_adapter_state_dict(
    model: nn.Module,
    name: str,
    tensors: dict[str, torch.Tensor],
    extra_modules: list[str] | tuple[str, ...] = (),
) -> None:
    """Copy ``tensors`` (keys as :func:`adapter_state_dict` writes them) into adapter ``name``.

    Every adapter key must be present. Other keys must be parameters of the task head or of
    ``extra_modules`` (PEFT's ``modules_to_save``) and are copied into the model in place.
    """
    targets = {_strip(n, name): p for n, p in adapter_parameters(model, name).items()}
    extras = dict(head_parameters(model))
    for n, p in model.named_parameters():
        owner = n.rsplit(".", 1)[0]
        if not _is_adapter_param(n) and any(
            owner == m or owner.endswith("." + m) for m in extra_modules
        ):
            extras[n] = p
    missing = sorted(set(targets) - set(tensors))
    unknown = sorted(set(tensors) - set(targets) - set(extras))
    if missing or unknown:
        raise ModelError(
            f"adapter weights do not fit adapter {name!r}: missing {missing[:5]}"
            f"{' ...' if len(missing) > 5 else ''}, unexpected {unknown[:5]}"
            f"{' ...' if len(unknown) > 5 else ''} (were they saved from another base model?)"
        )
    with torch.no_grad():
        for key, value in tensors.items():
            param = targets[key] if key in targets else extras[key]
            if param.shape != value.shape:
                raise ModelError(
                    f"{key}: saved shape {tuple(value.shape)}, model has "
                    f"{tuple(param.shape)} (was it saved from another base model?)"
                )
            param.copy_(value)


def _mergeable(model: nn.Module, name: str) -> None:
    config = state_of(model).get(name).config
    if not method_of(config).mergeable:
        deltas = [e.name for e in ADAPTERS if METHODS.get(e.obj.method).mergeable]
        raise ModelError(
            f"adapter {name!r} ({config.type}) cannot be merged: only weight deltas "
            f"({', '.join(deltas)}) fold into the base weights; a bottleneck adapter adds a "
            "non-linear module and a prefix adds attention positions. Keep it as an adapter "
            "(save_adapter) or use LoRA"
        )


def merge_adapter(model: nn.Module, name: str | None = None) -> None:
    """Fold adapter ``name`` (default: the active one) of a mergeable method (LoRA, IA3) into the
    base weights; it stays active, with its hooks idle. The base weights change until
    :func:`unmerge_adapter`."""
    state = state_of(model)
    name = name or state.active
    if name is None:
        raise ModelError("no adapter to merge: the model has no active adapter")
    _mergeable(model, name)
    if state.merged is not None:
        raise ModelError(f"adapter {state.merged!r} is already merged")
    set_active_adapter(model, name)
    for _, module, slot in slots(model):
        if name in slot:
            slot[name].merge(module)
            slot.merged = name
    state.merged = name


def unmerge_adapter(model: nn.Module) -> None:
    """Take the merged adapter back out of the base weights (exact up to float rounding)."""
    state = state_of(model)
    if state.merged is None:
        return
    for _, module, slot in slots(model):
        if slot.merged == state.merged:
            slot[state.merged].unmerge(module)
        slot.merged = None
    state.merged = None


def merge_and_unload(model: nn.Module) -> nn.Module:
    """Fold the active LoRA/IA3 adapter into the weights, remove every adapter, and return the
    same model object as a plain transformers model (its state dict has the base keys only).
    With no active adapter (or adapters disabled) this just removes them."""
    state = state_of(model)
    if active_adapter(model) is not None and state.merged is None:
        merge_adapter(model, state.active)
    for _, module, slot in slots(model):
        for adapter in list(slot):
            detach(module, adapter)
    model.__dict__.pop(STATE_ATTR, None)
    return model


def trainable_summary(model: nn.Module) -> str:
    """``"trainable params: 1,234 || all params: 56,789 || trainable%: 2.17"`` (tied weights once)."""
    trainable, total = count_parameters(model)
    return (
        f"trainable params: {trainable:,} || all params: {total:,} || "
        f"trainable%: {100 * trainable / max(total, 1):.4f}"
    )
