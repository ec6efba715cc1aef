"""What the benchmark measures besides accuracy: peak memory of this process, checkpoint bytes."""

from __future__ import annotations

import resource
import sys
from pathlib import Path

import torch

# Files the tokenizer writes into best/: the same few hundred KB for every method, so they are
# left out of the checkpoint size (they would dwarf a 300 KB LoRA adapter).
TOKENIZER_PREFIXES = (
    "tokenizer",
    "vocab",
    "special_tokens",
    "merges",
    "added_tokens",
    "chat_template",
)


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB.

    ``ru_maxrss`` is process-wide and never decreases, so each benchmark case runs in a fresh
    process and reads it at its end. Linux reports KiB, macOS bytes.
    """
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)


def peak_gpu_mb() -> float | None:
    """Peak CUDA memory allocated by torch in this process, in MiB (None without a GPU)."""
    if not torch.cuda.is_available():
        return None
    return round(torch.cuda.max_memory_allocated() / 2**20, 1)


def checkpoint_bytes(best: Path) -> int:
    """Bytes of the weights and configs in ``best/``: the adapter-only files (+ head) of an
    adapter run, the whole model of full fine-tuning; tokenizer files excluded."""
    return sum(
        p.stat().st_size
        for p in best.iterdir()
        if p.is_file() and not p.name.startswith(TOKENIZER_PREFIXES)
    )


def dir_bytes(folder: Path) -> int:
    """Bytes of every file in ``folder`` (tokenizer included)."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
