"""Where an adapter stage of a task sequence starts: stage k-1's adapter on a fresh copy of the base.

An adapter run's ``best/`` holds the adapter and the head it trained with. Stage k starts from it
as it is when nothing changes (one shared head, the same adapter section): ``model: <run dir>``.
Otherwise the runner writes a start folder (``init/<k>-<task>/``, adapter-only files) built here:

* separate heads: the base with task k's label count and a fresh head (seeded ``seed + k``, the
  head the initial row scores task k with), stage k-1's adapter copied onto it;
* an adapter section that grows (O-LoRA: one more LoRA block): the new section's adapter, with
  stage k-1's tensors copied into the keys they share and the new ones as initialised (seeded).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tunesmith.adapters import (
    active_adapter,
    adapter_state_dict,
    add_adapter,
    head_parameters,
    load_model_or_adapter,
    read_adapter_meta,
    save_adapter,
)
from tunesmith.adapters.io import META_FILE
from tunesmith.continual.hooks import SequenceContext
from tunesmith.errors import ModelError
from tunesmith.heads import fresh_head
from tunesmith.pooling import apply_pooling, current_pooling

__all__ = ["adapter_start", "copy_adapter", "write_adapter_start"]


def copy_adapter(src: nn.Module, src_name: str, dst: nn.Module, dst_name: str) -> None:
    """Copy adapter ``src_name`` of ``src`` into adapter ``dst_name`` of ``dst``: every source
    tensor must have a key of the same shape there (the other keys of ``dst`` keep their values)."""
    old = adapter_state_dict(src, src_name)
    new = adapter_state_dict(dst, dst_name)
    bad = sorted(k for k, t in old.items() if k not in new or new[k].shape != t.shape)
    if bad:
        raise ModelError(
            f"adapter {src_name!r} does not fit the next stage's adapter: {bad[:4]} missing or "
            "of another shape (did the adapter: section change between stages?)"
        )
    with torch.no_grad():
        for key, t in old.items():
            new[key].copy_(t)


def adapter_start(
    ctx: SequenceContext, previous: Path, k: int, name: str, config: Any
) -> nn.Module:
    """Stage k's starting model: the base (task k's head, see the module docstring) with stage
    k-1's adapter (from ``previous``, its ``best/``) copied into adapter ``name`` (``config``)."""
    old = load_model_or_adapter(str(previous), ctx.task_type)
    base = read_adapter_meta(previous)["base"]["name_or_path"]
    labels = ctx.labels_for(k)
    kwargs = {"id2label": dict(enumerate(labels))} if labels is not None else {}
    model = load_model_or_adapter(base, ctx.task_type, init_seed=ctx.seed + k, **kwargs)
    pooling = current_pooling(old)
    if pooling in ("cls", "mean"):
        apply_pooling(model, pooling)
    with torch.random.fork_rng(devices=[]):  # the new parameters' init, seeded per stage
        torch.manual_seed(ctx.seed + k)
        add_adapter(model, name, config)
    copy_adapter(old, active_adapter(old), model, name)
    params = dict(model.named_parameters())
    with torch.no_grad():
        if ctx.classification and not ctx.shared:
            for n, t in fresh_head(model, len(labels), ctx.seed + k).items():
                params[n].copy_(t)
        elif ctx.classification:  # one shared head: it goes on training
            for n, p in head_parameters(old).items():
                params[n].copy_(p)
    return model


def write_adapter_start(
    ctx: SequenceContext, previous: Path, folder: Path, k: int, settings: tuple[str, bool, Any]
) -> Path:
    """Write stage k's start (adapter-only files + tokenizer) to ``folder`` once, whole."""
    if (folder / META_FILE).is_file():
        return folder
    name, train_head, config = settings
    model = adapter_start(ctx, previous, k, name, config)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save_adapter(model, tmp, name, include_head=train_head or ctx.classification)
    ctx.tokenizer.save_pretrained(str(tmp))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    return folder
