"""Digests of what a run depends on: files (data, recipes) and weights.

Used to tell, before anything is overwritten, whether a resumed run still sees the same inputs and
whether an adapter is being loaded onto the base it was trained on. Digests are BLAKE2b (fast,
stdlib) in hex, over content only: the same bytes give the same digest wherever they live.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import nn

__all__ = ["file_digest", "weights_digest"]

_CHUNK = 1 << 20


def file_digest(path: str | os.PathLike[str]) -> str:
    """Digest of a file's bytes, or of a folder's files (relative names and bytes, sorted)."""
    h = hashlib.blake2b(digest_size=16)
    root = Path(path)
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    for file in files:
        if root.is_dir():
            h.update(file.relative_to(root).as_posix().encode() + b"\0")
        with file.open("rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
    return h.hexdigest()


def weights_digest(
    weights: nn.Module | Mapping[str, torch.Tensor], skip: Iterable[str] = ()
) -> str:
    """Digest of named tensors (names, dtypes, shapes, values), in name order.

    ``weights`` is a module (its parameters and buffers, ``state_dict`` order does not matter) or a
    state dict; names containing any string in ``skip`` (an adapter slot, a head) are left out.
    """
    tensors = weights.state_dict() if isinstance(weights, nn.Module) else weights
    skipped = tuple(skip)
    h = hashlib.blake2b(digest_size=16)
    for name in sorted(tensors):
        if any(s in name for s in skipped):
            continue
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\0".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()
