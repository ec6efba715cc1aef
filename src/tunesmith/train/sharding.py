"""FSDP2 (``train.distributed.strategy: fsdp``): shard the model over the processes, and the few
places where a sharded model needs care — the full weights for ``best/``, the state sizes.

The model is sharded with PyTorch's own :func:`torch.distributed.fsdp.fully_shard` (FSDP2): each
transformer block is one unit (its parameters are gathered for its forward and backward, then
freed), then the root takes the rest (embeddings, final norm, head). Every parameter becomes a
``DTensor`` holding 1/world of its rows on each process; gradients and AdamW's state follow the
parameters, so each process holds about 1/world of them. The same call serves CPU (gloo) and
CUDA (NCCL); accelerate's FSDP plugin calls the same ``fully_shard`` but refuses CPU processes.

Frozen and trainable parameters may share a unit (a LoRA adapter in a frozen block): FSDP2
reduce-scatters only the gradients of parameters that require them. Whatever changes
``requires_grad`` or wraps forwards (freezing, adapters, gradient checkpointing, pooling, loss
terms' own modules) happens before :func:`shard_model`; the optimiser is built after it, on the
sharded parameters.

Checkpoints stay sharded: every process saves and restores its own shards
(:mod:`tunesmith.train.statefiles` reads ``DTensor`` local shards). ``best/`` is written from the
full weights: :func:`full_weights` gathers them to the main process's CPU memory, swaps them into
the model there for the duration of the block (so the usual HF / adapter writers run unchanged)
and, when asked, scatters what the block changed back into the shards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    set_model_state_dict,
)
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import FSDPModule, fully_shard
from torch.distributed.tensor import DTensor
from torch.optim import Optimizer

from tunesmith.config import Recipe
from tunesmith.transfer import layer_layout


def uses_fsdp(recipe: Recipe, num_processes: int) -> bool:
    """Whether this run shards its model: ``strategy: fsdp`` and more than one process."""
    return recipe.train.distributed.strategy == "fsdp" and num_processes > 1


def is_sharded(model: nn.Module) -> bool:
    return isinstance(model, FSDPModule)


def block_modules(model: nn.Module) -> list[nn.Module]:
    """The transformer blocks, bottom to top (:func:`tunesmith.transfer.layer_layout`), each one
    FSDP unit. A block nested in another is dropped (the outer one holds it)."""
    modules = dict(model.named_modules())
    names = layer_layout(model).layers
    outer = [n for n in names if not any(n.startswith(o + ".") for o in names if o != n)]
    return [modules[n] for n in outer if n in modules]


def shard_model(
    model: nn.Module, groups: list[dict[str, Any]], device: torch.device, reshard: bool = True
) -> list[dict[str, Any]]:
    """Shard ``model`` in place (each block, then the root) and return ``groups`` (optimiser
    parameter groups) holding the sharded parameters in place of the ones they held."""
    names: dict[int, str] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(p), name)
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    for block in block_modules(model):
        fully_shard(block, mesh=mesh, reshard_after_forward=reshard)
    # The root (embeddings, final norm, output head) stays gathered from forward to backward:
    # backward needs it at once, and the chunked LM loss (train.loss_chunk_tokens) calls the
    # head again outside the forward, in the backward's recompute.
    fully_shard(model, mesh=mesh, reshard_after_forward=False)
    sharded = dict(model.named_parameters(remove_duplicate=False))

    def swap(p: torch.Tensor) -> torch.Tensor:
        return sharded[names[id(p)]] if id(p) in names else p  # a loss term's own: unchanged

    return [{**g, "params": [swap(p) for p in g["params"]]} for g in groups]


def local(t: torch.Tensor) -> torch.Tensor:
    """This process's shard of a ``DTensor``; any other tensor as it is."""
    return t.to_local() if isinstance(t, DTensor) else t


def is_main_process() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


@contextlib.contextmanager
def full_weights(model: nn.Module, write_back: bool = False) -> Iterator[bool]:
    """Inside the block the main process's ``model`` holds its full weights (plain CPU tensors
    gathered from every shard); yields whether this is the main process. Every process must
    enter. With ``write_back`` what the main process changed in them goes back into the shards
    (every process's) at the end. A model that is not sharded is left as it is."""
    main = is_main_process()
    if not is_sharded(model):
        yield main
        return
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    full = get_model_state_dict(model, options=options)  # empty on the other processes
    originals: list[tuple[nn.Module, str, str, nn.Parameter]] = []
    try:
        if main:
            originals = _swap_in(model, full)
        yield main
    finally:
        for module, name, key, p in originals:  # what the block left in them, then back
            full[key] = module._parameters[name].detach()
            module._parameters[name] = p
    if write_back:
        options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)
        set_model_state_dict(model, full if main else {}, options=options)


def _swap_in(model: nn.Module, full: dict[str, torch.Tensor]) -> list[tuple]:
    """Replace every sharded parameter by a plain one over its full tensor in ``full`` (tied
    names share one); returns (module, name, state-dict key, original) for each place."""
    slots: dict[int, list[tuple[nn.Module, str, str]]] = {}
    for prefix, module in model.named_modules(remove_duplicate=False):
        for name, p in module._parameters.items():
            if p is not None:
                key = f"{prefix}.{name}" if prefix else name
                slots.setdefault(id(p), []).append((module, name, key))
    originals = []
    for places in slots.values():
        first = places[0][0]._parameters[places[0][1]]
        value = next(full[key] for _, _, key in places if key in full)
        plain = nn.Parameter(value, requires_grad=first.requires_grad)
        for module, name, key in places:
            originals.append((module, name, key, module._parameters[name]))
            module._parameters[name] = plain
    return originals


def copy_weights(model: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Copy ``tensors`` (state-dict names) into ``model``'s tensors in place. Not through
    ``load_state_dict``: FSDP2 hooks it to re-shard, which the full weights swapped in by
    :func:`full_weights` must not be."""
    current = model.state_dict(keep_vars=True)
    with torch.no_grad():
        for name, t in tensors.items():
            if name not in current:
                raise ValueError(f"{name}: the model has no such tensor")
            current[name].copy_(t)


def _bytes(tensors: Any) -> int:
    return sum(local(t).numel() * local(t).element_size() for t in tensors)


def state_bytes(model: nn.Module, optimizer: Optimizer) -> dict[str, int]:
    """This process's bytes of parameters, gradients (one per trainable parameter, whether or
    not it is allocated now) and optimiser state: what the strategy puts on each process."""
    params = {id(p): p for p in model.parameters()}
    trainable = {id(p): p for g in optimizer.param_groups for p in g["params"] if p.requires_grad}
    state = [t for s in optimizer.state.values() for t in s.values() if isinstance(t, torch.Tensor)]
    sizes = {
        "params": _bytes(params.values()),
        "grads": _bytes(trainable.values()),
        "optimizer": _bytes(state),
    }
    return {**sizes, "total": sum(sizes.values())}
