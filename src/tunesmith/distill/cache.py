"""Teacher-output cache: run the teacher once over the training set, reuse it every epoch and run.

What is stored (only where a loss is taken, so prompts and padding cost nothing):

* classification: the teacher's full logits — ``(C,)`` per example for sequence classification,
  ``(C,)`` per labelled token for token classification;
* causal LM: the top-k log-probabilities (at T=1, stored fp16), their token ids (int32) and the
  tail bucket ``log(1 - sum of the top-k probabilities)`` (fp32, the logsumexp of the other
  tokens' log-probs) at every position t whose next token is trained (``labels[t + 1] != -100``),
  i.e. at the rows of ``logits[:, :-1]`` that :func:`tunesmith.distill.losses.lm_token_mask`
  keeps. KL / JSD against these are exact over the top k and correct in total mass
  (:mod:`tunesmith.distill.topk`); temperature is applied at loss time, so one cache serves every
  T. ``meta.json`` records ``bytes_per_token`` (k * (2 + 4) + 4 for an LM).

Layout: ``<root>/<key[:24]>/meta.json`` + ``shard-00000.safetensors`` ... Each shard holds
``values`` (P, C|k) (float32 logits, or float16 log-probs for an LM), ``ids`` (P, k) int32 and
``tail`` (P,) float32 (LM only), ``positions`` (P,) int32 (row of the logits each value belongs
to), ``offsets`` (n + 1,) int64 (example i owns rows ``offsets[i]:offsets[i+1]``) and ``lengths``
(n,) int32 (sequence lengths).

The teacher may be a :class:`~tunesmith.distill.ensemble.TeacherEnsemble` (several teachers):
the mixture's top-k + tail is stored, and its weights / mode are part of its state dict, hence of
the key. The same cache holds LwF's previous-model targets in continual sequences.

The key is the sha256 of (format version, teacher architecture + config hash + a sha256 of every
weight tensor, a sha256 of the examples' input_ids / attention_mask / token_type_ids / labels,
task, k), so a changed teacher or dataset gets a new directory and is never silently reused. The
teacher's path is *not* part of the key: a copied run dir still hits its cache. A cache is written
into a temporary directory and renamed into place when complete.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from tunesmith.data.collate import Collator
from tunesmith.distill.collate import TEACHER_KEYS
from tunesmith.distill.topk import teacher_tail
from tunesmith.errors import DataError, ModelError
from tunesmith.models import model_identity
from tunesmith.registry import TASKS
from tunesmith.tasks import task_kind

__all__ = [
    "CACHE_VERSION",
    "TEACHER_KEYS",
    "TeacherCache",
    "attach_teacher_outputs",
    "bytes_per_token",
    "cache_key",
    "data_fingerprint",
    "weights_fingerprint",
]

logger = logging.getLogger(__name__)

CACHE_VERSION = 2  # 2: LM values fp16 + tail bucket
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def weights_fingerprint(model: nn.Module) -> str:
    """sha256 over every state-dict tensor (name, dtype, shape, bytes), in name order."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def data_fingerprint(examples: Sequence[dict[str, Any]]) -> str:
    """sha256 of each example's input_ids, attention_mask, token_type_ids and labels, in order."""
    h = hashlib.sha256()
    for ex in examples:
        for key in (*_INPUTS, "labels"):
            value = ex.get(key)
            arr = np.asarray([] if value is None else value, dtype=np.int64).reshape(-1)
            h.update(f"{key}:{arr.size}:{value is None}|".encode())
            h.update(arr.tobytes())
    return h.hexdigest()


def cache_key(
    teacher: nn.Module, examples: Sequence[dict[str, Any]], *, task: str, top_k: int | None
) -> tuple[str, dict[str, Any]]:
    """(hex key, the description it hashes) for a teacher, an encoded dataset and the settings."""
    identity = {k: v for k, v in model_identity(teacher).items() if k != "name_or_path"}
    desc = {
        "version": CACHE_VERSION,
        "teacher": identity | {"weights_sha256": weights_fingerprint(teacher)},
        "data": {"examples": len(examples), "sha256": data_fingerprint(examples)},
        "task": task,
        "top_k": top_k,
    }
    text = json.dumps(desc, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest(), desc


def _positions(task: str, ex: dict[str, Any]) -> list[int]:
    """Rows of the teacher's logits that a loss uses for this example (see module docstring)."""
    return task_kind(task).scored_positions(ex.get("labels"), len(ex["input_ids"]))


def _inputs(teacher: nn.Module) -> tuple[str, ...]:
    """Example keys the teacher reads (a per-example teacher ensemble also reads the labels)."""
    return (*_INPUTS, "labels") if getattr(teacher, "needs_labels", False) else _INPUTS


Rows = tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, list[int]]


def _compact(values: torch.Tensor, top_k: int | None, pos: list[int]) -> Rows:
    """(values, ids, tail, positions) of one example from its (P, C|V) fp32 logits rows."""
    if top_k is None:
        return values.cpu().contiguous(), None, None, pos
    log_probs = F.log_softmax(values, dim=-1)
    lp, ids = log_probs.topk(top_k, dim=-1)
    tail = teacher_tail(log_probs, ids)
    return lp.half().cpu(), ids.cpu().to(torch.int32), tail.cpu(), pos


@torch.no_grad()
def _teacher_rows(
    teacher: nn.Module,
    examples: Sequence[dict[str, Any]],
    task: str,
    top_k: int | None,
    batch_size: int,
) -> list[Rows]:
    """Per example: (values (P, C|k), ids (P, k) | None, tail (P,) | None, positions)."""
    pad = teacher.config.pad_token_id if teacher.config.pad_token_id is not None else 0
    collate = Collator(pad_token_id=pad)
    device = next(teacher.parameters()).device
    order = sorted(range(len(examples)), key=lambda i: len(examples[i]["input_ids"]))
    out: list[Any] = [None] * len(examples)
    keys = _inputs(teacher)
    teacher.eval()
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = collate([{k: examples[i][k] for k in keys if k in examples[i]} for i in idx])
        logits = teacher(**{k: v.to(device) for k, v in batch.items()}).logits
        for row, i in enumerate(idx):  # select rows (and top-k) on the device: (B, T, V) is big
            pos = _positions(task, examples[i])
            values = (logits[row : row + 1] if logits.dim() == 2 else logits[row, pos]).float()
            out[i] = _compact(values, top_k, pos)
    return out


def bytes_per_token(top_k: int | None, width: int) -> int:
    """Stored bytes per cached position: fp16 log-probs + int32 ids + fp32 tail for an LM,
    fp32 logits for a classifier (positions / offsets bookkeeping not counted)."""
    return top_k * (2 + 4) + 4 if top_k is not None else width * 4


def _write_shard(path: Path, rows: list[Rows], lengths: list[int], width: int) -> None:
    counts = [len(r[3]) for r in rows]
    offsets = torch.tensor([0, *np.cumsum(counts).tolist()], dtype=torch.int64)
    tensors = {
        "values": torch.cat([r[0] for r in rows]) if rows else torch.zeros(0, width),
        "positions": torch.tensor([p for r in rows for p in r[3]], dtype=torch.int32),
        "offsets": offsets,
        "lengths": torch.tensor(lengths, dtype=torch.int32),
    }
    if rows and rows[0][1] is not None:
        tensors["ids"] = torch.cat([r[1] for r in rows])
        tensors["tail"] = torch.cat([r[2] for r in rows])
    save_file(tensors, str(path))


class TeacherCache:
    """A complete cache directory, loaded in memory. Build one with :meth:`build`."""

    def __init__(self, directory: str | os.PathLike[str]):
        self.directory = Path(directory)
        meta_path = self.directory / "meta.json"
        if not meta_path.is_file():
            raise DataError(f"{self.directory} is not a complete teacher cache (no meta.json)")
        try:  # safetensors and JSON only: a damaged or planted file is an error, never code
            self.meta = json.loads(meta_path.read_text())
            self.key: str = self.meta["key"]
            self.task: str = self.meta["description"]["task"]
            self.top_k: int | None = self.meta["description"]["top_k"]
            self.n_examples: int = self.meta["description"]["data"]["examples"]
            self.shard_size: int = self.meta["shard_size"]
            self.shards = [load_file(str(self.directory / n)) for n in self.meta["shards"]]
        except (OSError, ValueError, KeyError, TypeError, SafetensorError) as exc:
            raise DataError(
                f"teacher cache {self.directory} is damaged ({type(exc).__name__}); delete it "
                "to have it computed again"
            ) from None
        self.reused = True  # set to False by build() when it computed the outputs
        self.bytes_per_token: int = self.meta.get("bytes_per_token", 0)

    @classmethod
    def build(
        cls,
        root: str | os.PathLike[str],
        teacher: nn.Module,
        examples: Sequence[dict[str, Any]],
        *,
        task: str,
        top_k: int | None = None,
        batch_size: int = 16,
        shard_size: int = 4096,
    ) -> TeacherCache:
        """Open the cache for (teacher, examples, task, top_k) under ``root``, computing it if absent.

        ``top_k`` is required for ``causal_lm`` (log-probs of the k most likely tokens) and must be
        None for classification (full logits). The teacher runs where its parameters are.
        """
        cacheable = [e.name for e in TASKS if e.obj.teacher_cache]
        if task not in cacheable:
            raise ModelError(f"teacher cache supports tasks {cacheable}, not {task!r}")
        if task_kind(task).generative != (top_k is not None):
            raise ModelError(
                "teacher cache: causal_lm caches top-k log-probs (set top_k, e.g. 32); "
                "classification caches full logits (leave top_k unset)"
            )
        key, desc = cache_key(teacher, examples, task=task, top_k=top_k)
        final = Path(root) / key[:24]
        if (final / "meta.json").is_file():
            try:
                cache = cls(final)
            except DataError as exc:  # damaged: computed again below
                logger.warning("%s", exc)
            else:
                if cache.key == key:
                    return cache
        rows = _teacher_rows(teacher, examples, task, top_k, batch_size)
        width = top_k or teacher.config.num_labels
        tmp = Path(root) / f".{key[:24]}.tmp-{uuid.uuid4().hex[:8]}"
        tmp.mkdir(parents=True)
        try:
            names = []
            for s, start in enumerate(range(0, max(len(rows), 1), shard_size)):
                names.append(f"shard-{s:05d}.safetensors")
                chunk = examples[start : start + shard_size]
                lengths = [len(ex["input_ids"]) for ex in chunk]
                _write_shard(tmp / names[-1], rows[start : start + shard_size], lengths, width)
            meta = {"key": key, "description": desc, "shard_size": shard_size, "shards": names}
            meta["bytes_per_token"] = bytes_per_token(top_k, width)
            (tmp / "meta.json").write_text(json.dumps(meta, indent=2))  # last: marks complete
            if final.exists():  # an incomplete or stale directory (different full key)
                shutil.rmtree(final, ignore_errors=True)
            try:
                os.rename(tmp, final)
            except OSError:  # another process (rank) renamed its identical cache first
                if not (final / "meta.json").is_file():
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        cache = cls(final)
        cache.reused = False
        return cache

    def check(self, examples: Sequence[dict[str, Any]]) -> None:
        """Raise :class:`DataError` unless ``examples`` are the dataset this cache was built on."""
        data = self.meta["description"]["data"]
        if len(examples) != data["examples"] or data_fingerprint(examples) != data["sha256"]:
            raise DataError(
                f"teacher cache {self.directory} was built for another dataset "
                f"({data['examples']} examples) than the {len(examples)} given; rebuild it with "
                "TeacherCache.build (the data or its encoding changed)"
            )

    def rows(self, i: int) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, int]:
        """Compact rows of example ``i``: values (P, C|k), ids (P, k) | None, positions (P,), T."""
        shard, a, b, length = self._locate(i)
        ids = shard["ids"][a:b] if "ids" in shard else None
        return shard["values"][a:b], ids, shard["positions"][a:b], length

    def _locate(self, i: int) -> tuple[dict[str, torch.Tensor], int, int, int]:
        if not 0 <= i < self.n_examples:
            raise IndexError(f"example {i} is outside the cache's {self.n_examples} examples")
        shard = self.shards[i // self.shard_size]
        j = i % self.shard_size
        a, b = int(shard["offsets"][j]), int(shard["offsets"][j + 1])
        return shard, a, b, int(shard["lengths"][j])

    def example(self, i: int) -> dict[str, torch.Tensor]:
        """Example ``i``'s teacher outputs in the batch-key layout (see :data:`TEACHER_KEYS`).

        sequence classification: ``teacher_logits`` (C,); token classification:
        ``teacher_logits`` (T_i, C); causal LM: ``teacher_topk_logprobs`` (T_i, k) float16,
        ``teacher_topk_ids`` (T_i, k) int64 and ``teacher_topk_tail`` (T_i,) float32, row t =
        prediction of token t+1. Rows the cache does not hold (masked positions) are zeros.
        """
        values, ids, pos, length = self.rows(i)
        if not task_kind(self.task).per_token:
            return {"teacher_logits": values[0].clone()}
        dense = values.new_zeros(length, values.shape[-1])
        dense[pos.long()] = values
        if ids is None:
            return {"teacher_logits": dense}
        dense_ids = torch.zeros(length, ids.shape[-1], dtype=torch.long)
        dense_ids[pos.long()] = ids.long()
        shard, a, b, _ = self._locate(i)
        tail = torch.zeros(length, dtype=torch.float32)
        tail[pos.long()] = shard["tail"][a:b]
        return {
            "teacher_topk_logprobs": dense,
            "teacher_topk_ids": dense_ids,
            "teacher_topk_tail": tail,
        }


def attach_teacher_outputs(
    examples: list[dict[str, Any]], cache: TeacherCache
) -> list[dict[str, Any]]:
    """Add each example's teacher outputs (:meth:`TeacherCache.example`) to it, in place.

    Checks first that ``examples`` are exactly the cached dataset. Batch them with
    :class:`tunesmith.distill.collate.DistillCollator` (the plain Collator drops these keys).
    """
    cache.check(examples)
    for i, ex in enumerate(examples):
        ex.update(cache.example(i))
    return examples
