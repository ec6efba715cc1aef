"""Memory of a training run: frozen weights in a smaller dtype, gradient checkpointing.

``model.dtype: bf16`` stores every frozen weight (a base under adapters, frozen layers, a teacher,
a reference snapshot) in bf16 -- half the bytes, no per-step cast -- while what the optimizer
trains stays fp32 (:func:`cast_for_training`). A model holding both dtypes gets input-cast hooks
(:func:`align_input_dtypes`): a module whose weights are in one dtype casts floating inputs
arriving in another to it, so the forward works with or without autocast.

``train.gradient_checkpointing`` (:func:`enable_gradient_checkpointing`) uses transformers'
non-reentrant checkpointing; with frozen embeddings the embedding output is made to require
grad, as PEFT does, so every checkpointed block has an input that carries a gradient.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from tunesmith.errors import ConfigError

__all__ = [
    "align_input_dtypes",
    "cast_for_training",
    "cast_inputs",
    "enable_gradient_checkpointing",
    "parameter_bytes",
]

CAST_HOOK = "_tunesmith_cast_hook"


def cast_for_training(
    model: nn.Module, trainable: Iterable[nn.Parameter], frozen: torch.dtype
) -> None:
    """Trainable floating parameters to fp32, every other floating parameter (and buffer of a
    module without trainable weights) to ``frozen``; quantized (integer) weights untouched.
    Adds the input-cast hooks when the model ends up with more than one dtype."""
    train_ids = {id(p) for p in trainable}
    with torch.no_grad():
        for p in model.parameters():
            if p.is_floating_point():
                wanted = torch.float32 if id(p) in train_ids else frozen
                if p.dtype != wanted:
                    p.data = p.data.to(wanted)
        for module in model.modules():
            own = list(module.parameters(recurse=False))
            if own and not any(id(p) in train_ids for p in own):
                for name, buf in module.named_buffers(recurse=False):
                    if buf is not None and buf.is_floating_point() and buf.dtype != frozen:
                        setattr(module, name, buf.to(frozen))
    dtypes = {p.dtype for p in model.parameters() if p.is_floating_point()}
    if len(dtypes) > 1:
        align_input_dtypes(model)


def cast_inputs(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """The forward pre-hook of :func:`align_input_dtypes`: floating inputs to the weights' dtype."""
    weight = next((p for p in module.parameters(recurse=False) if p.is_floating_point()), None)
    if weight is None:
        return args, kwargs
    if type(module) is nn.Linear and _autocasting(args, weight):
        return args, kwargs  # autocast casts a linear's input and weight itself: no round trip

    def cast(x: Any) -> Any:
        if isinstance(x, torch.Tensor) and x.is_floating_point() and x.dtype != weight.dtype:
            return x.to(weight.dtype)
        return x

    return tuple(cast(a) for a in args), {k: cast(v) for k, v in kwargs.items()}


def _autocasting(args: tuple, weight: torch.Tensor) -> bool:
    x = args[0] if args and isinstance(args[0], torch.Tensor) else None
    if x is None or x.device != weight.device or not torch.is_autocast_enabled(x.device.type):
        return False
    return x.dtype == torch.get_autocast_dtype(x.device.type)


def align_input_dtypes(model: nn.Module) -> None:
    """Every module owning floating weights casts floating inputs to its weights' dtype (once per
    module; a bf16 frozen block feeds an fp32 trained head, and back)."""
    for module in model.modules():
        if getattr(module, CAST_HOOK, False):
            continue
        if any(p.is_floating_point() for p in module.parameters(recurse=False)):
            module.register_forward_pre_hook(cast_inputs, with_kwargs=True, prepend=True)
            object.__setattr__(module, CAST_HOOK, True)


def parameter_bytes(model: nn.Module, trainable: bool | None = None) -> int:
    """Bytes of the model's parameters (``trainable``: only those that do / do not train)."""
    return sum(
        p.numel() * p.element_size()
        for p in model.parameters()
        if trainable is None or p.requires_grad == trainable
    )


def _checkpointable(model: nn.Module) -> Any:
    """The transformers model inside ``model`` that can checkpoint (itself, or a multi-head
    model's backbone)."""
    for candidate in (model, getattr(model, "backbone", None)):
        if candidate is not None and getattr(candidate, "supports_gradient_checkpointing", False):
            return candidate
    raise ConfigError(
        "train.gradient_checkpointing",
        f"{type(model).__name__} does not support gradient checkpointing",
        "set it to false",
    )


def enable_gradient_checkpointing(model: nn.Module) -> None:
    """Non-reentrant activation checkpointing of every block (``use_cache`` off); frozen input
    embeddings get an output that requires grad (PEFT's ``enable_input_require_grads``)."""
    target = _checkpointable(model)
    kwargs = {"use_reentrant": False}
    if hasattr(target, "activation_checkpointing_enable"):  # transformers >= 5.x's name
        target.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        target.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    if getattr(target.config, "use_cache", None):
        target.config.use_cache = False
    embeddings = target.get_input_embeddings()
    if embeddings is not None and not any(p.requires_grad for p in embeddings.parameters()):
        target.enable_input_require_grads()
