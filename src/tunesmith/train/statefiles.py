"""Training state as safetensors + JSON: written and read by tunesmith, never unpickled.

Each function pair turns one live object into (tensors, JSON) and back, exactly (a resumed run
reproduces the uninterrupted run bit for bit):

* model weights — the ``state_dict`` entries that can change (parameters the optimiser holds and
  buffers); frozen parameters are not saved: they are the base model's, whose digest the run's
  fingerprint checks on resume;
* optimiser — per-parameter state tensors in safetensors (``state.<index>.<key>``), the parameter
  groups and any non-tensor state in JSON;
* LR scheduler — its ``state_dict`` in JSON;
* a sharded model (FSDP, :mod:`tunesmith.train.sharding`) — the same, per process: each one writes
  and reads the local shards of its ``DTensor`` parameters and optimiser state;
* RNG streams of one process — torch CPU/CUDA generator states as uint8 tensors, Python
  ``random`` and NumPy states in JSON.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.distributed.tensor import DTensor

from tunesmith.atomic import atomic_write_json


def _json_value(value: Any) -> Any:
    """Tuples -> lists (JSON); everything else must already be JSON-able."""
    if isinstance(value, tuple):
        return [_json_value(v) for v in value]
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    return value


def _local(t: torch.Tensor) -> torch.Tensor:
    """This process's shard of a ``DTensor`` (a sharded model); any other tensor as it is."""
    return t.to_local() if isinstance(t, DTensor) else t


def trained_tensors(model: nn.Module, trainable: set[int]) -> dict[str, torch.Tensor]:
    """State-dict entries that can change: parameters whose ``id`` is in ``trainable`` (the
    optimiser's) and buffers. A tensor reachable under two names (tied weights) is kept once."""
    out, seen = {}, set()
    for name, t in model.state_dict(keep_vars=True).items():
        if id(t) in seen or (isinstance(t, nn.Parameter) and id(t) not in trainable):
            continue
        seen.add(id(t))
        out[name] = _local(t.detach()).cpu().contiguous()
    return out


def save_weights(model: nn.Module, trainable: set[int], path: Path) -> None:
    save_file(trained_tensors(model, trainable), str(path))


def load_weights(model: nn.Module, path: Path) -> None:
    """Copy the saved tensors into ``model`` (every saved name must exist in it)."""
    tensors = load_file(str(path))
    current = model.state_dict(keep_vars=True)
    if not any(isinstance(t, DTensor) for t in current.values()):
        result = model.load_state_dict(tensors, strict=False)
        if result.unexpected_keys:
            raise ValueError(f"tensors the model does not have: {result.unexpected_keys[:3]}")
        return
    unknown = [name for name in tensors if name not in current]
    if unknown:
        raise ValueError(f"tensors the model does not have: {unknown[:3]}")
    with torch.no_grad():  # a sharded model: these are this process's shards
        for name, t in tensors.items():
            _local(current[name]).copy_(t)


def save_optimizer(optimizer: torch.optim.Optimizer, tensors_path: Path, json_path: Path) -> None:
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    other: dict[str, dict[str, Any]] = {}
    for index, entry in sd["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{index}.{key}"] = _local(value.detach()).cpu().contiguous()
            else:
                other.setdefault(str(index), {})[key] = _json_value(value)
    save_file(tensors, str(tensors_path))
    atomic_write_json(json_path, {"param_groups": _json_value(sd["param_groups"]), "state": other})


def load_optimizer(optimizer: torch.optim.Optimizer, tensors_path: Path, json_path: Path) -> None:
    meta = json.loads(json_path.read_text())
    state: dict[int, dict[str, Any]] = {}
    for name, t in load_file(str(tensors_path)).items():
        _, index, key = name.split(".", 2)
        state.setdefault(int(index), {})[key] = t
    for index, entry in meta["state"].items():
        state.setdefault(int(index), {}).update(entry)
    _as_shards(optimizer, state)
    groups = meta["param_groups"]
    for group in groups:  # AdamW's betas are a tuple in a fresh optimiser
        if isinstance(group.get("betas"), list):
            group["betas"] = tuple(group["betas"])
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def _as_shards(optimizer: torch.optim.Optimizer, state: dict[int, dict[str, Any]]) -> None:
    """Loaded state of a sharded parameter: this process's shards, made ``DTensor`` again like
    the parameter (state of its shape; scalars such as AdamW's ``step`` stay plain)."""
    params = [p for g in optimizer.param_groups for p in g["params"]]
    for index, entry in state.items():
        p = params[index]
        if not isinstance(p, DTensor):
            continue
        for key, value in entry.items():
            if isinstance(value, torch.Tensor) and value.shape == p.to_local().shape:
                entry[key] = DTensor.from_local(
                    value.to(p.device),
                    p.device_mesh,
                    p.placements,
                    shape=p.shape,
                    stride=p.stride(),
                )


def save_scheduler(scheduler: Any, path: Path) -> None:
    atomic_write_json(path, _json_value(scheduler.state_dict()))


def load_scheduler(scheduler: Any, path: Path) -> None:
    scheduler.load_state_dict(json.loads(path.read_text()))


def save_rng(tensors_path: Path, json_path: Path) -> None:
    """This process's RNG streams (torch CPU and every CUDA device, Python, NumPy)."""
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda.{i}"] = s
    save_file(tensors, str(tensors_path))
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    atomic_write_json(
        json_path,
        {
            "python": [version, list(internal), gauss],
            "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        },
    )


def load_rng(tensors_path: Path, json_path: Path) -> None:
    meta = json.loads(json_path.read_text())
    tensors = load_file(str(tensors_path))
    version, internal, gauss = meta["python"]
    name, keys, pos, has_gauss, cached = meta["numpy"]
    cuda_keys = sorted(
        (k for k in tensors if k.startswith("torch_cuda.")), key=lambda k: int(k[11:])
    )
    cuda = [tensors[k] for k in cuda_keys]
    random.setstate((version, tuple(internal), gauss))
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(tensors["torch_cpu"])
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
