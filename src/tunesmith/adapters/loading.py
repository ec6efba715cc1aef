"""Load any model source, adapter run folders included: the one entry point above ``load_model``.

:func:`tunesmith.models.load_model` (the layer below) loads embedded names, model folders and hub
ids. An adapter run's ``best/`` (or a PEFT folder) holds no model, only an adapter that names its
base: :func:`load_model_or_adapter` loads that base with the saved head's labels, then the adapter
(and head weights) on it. Callers that take a run folder as ``model:`` -- training setup, predict,
distillation teachers, continual stages -- use this; the layer below never imports adapters.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel

from tunesmith.adapters.io import load_adapter, read_adapter_meta
from tunesmith.errors import ModelError
from tunesmith.models import is_adapter_folder, load_model, resolve_model
from tunesmith.pooling import CONFIG_KEY, apply_pooling
from tunesmith.tasks import task_kind

__all__ = ["load_model_or_adapter"]


def load_model_or_adapter(
    name_or_path: str | os.PathLike[str],
    task: str,
    *,
    num_labels: int | None = None,
    id2label: dict[int, str] | None = None,
    label2id: dict[str, int] | None = None,
    dtype: torch.dtype = torch.float32,
    from_scratch: bool = False,
    init_seed: int | None = None,
    restored: Sequence[str] = (),
    **options: Any,
) -> PreTrainedModel:
    """:func:`~tunesmith.models.load_model`, or for an adapter folder (a run's adapter-only
    ``best/``, a folder PEFT wrote) its base model with the adapter loaded and active.

    The arguments are ``load_model``'s (``restored``: modules whose weights the caller restores;
    ``options``: its loading options, e.g. ``revision``; for an adapter, they load its base). For an adapter folder, a classification head takes the
    saved head's labels unless labels are given, and ``from_scratch`` is a :class:`ModelError`.
    """
    resolved = resolve_model(os.fspath(name_or_path))
    if not is_adapter_folder(resolved):
        return load_model(
            name_or_path,
            task,
            num_labels=num_labels,
            id2label=id2label,
            label2id=label2id,
            dtype=dtype,
            from_scratch=from_scratch,
            init_seed=init_seed,
            restored=restored,
            **options,
        )
    folder = Path(resolved)
    if from_scratch:
        raise ModelError(f"{folder} is an adapter: from_scratch has no meaning for it")
    meta = read_adapter_meta(folder)
    base = meta.get("base", {}).get("name_or_path")
    if not base:
        raise ModelError(f"the adapter in {folder} does not name its base model")
    if (
        task_kind(task).classification
        and meta.get("id2label")
        and not (num_labels or id2label or label2id)
    ):
        id2label = {int(k): v for k, v in meta["id2label"].items()}  # the saved head's labels
    model = load_model_or_adapter(
        base,
        task,
        num_labels=num_labels,
        id2label=id2label,
        label2id=label2id,
        dtype=dtype,
        init_seed=init_seed,
        restored=meta.get("head") or (),  # the saved head: loaded below, not random
        **options,
    )
    pooling = (meta.get("base_config") or {}).get(CONFIG_KEY)
    if pooling in ("pooler", "cls", "mean"):  # the run's head read this (tunesmith.pooling);
        apply_pooling(model, pooling)  # the base must match it before the adapter's base check
    load_adapter(model, folder)  # restores the saved head too
    return model
