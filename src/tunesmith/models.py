"""Load a backbone with a task head from an embedded name, a local folder or a hub id.

``model: minilm`` in a recipe resolves to the all-MiniLM-L6-v2 folder shipped in a Python package;
``model: smollm2`` to SmolLM2-135M-Instruct, converted once from the packaged GGUF into a cached
safetensors folder (see ``MODELS.md``); anything else is a local folder or a hub id. Task kinds
name their transformers Auto class (:mod:`tunesmith.tasks`); an architecture without a head for
the task is a :class:`~tunesmith.errors.ModelError` that names the tasks it does support. The
``from_pretrained`` keywords and load errors are in :mod:`tunesmith.loadopts`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from tunesmith.config.sources import only_pickle_weights
from tunesmith.embedded import EMBEDDED, embedded_name
from tunesmith.errors import ModelError
from tunesmith.loadopts import (
    hub_options,
    load_errors,
    log_new_weights,
    quantization_options,
    quiet_load_report,
    with_attention,
)
from tunesmith.paths import hub_offline, looks_like_path
from tunesmith.pooling import CONFIG_KEY, apply_pooling, current_pooling
from tunesmith.tasks import TASKS, task_kind

__all__ = [
    "EMBEDDED",
    "align_pad_token",
    "count_parameters",
    "load_model",
    "load_tokenizer",
    "model_identity",
    "resolve_model",
    "restore_pooling",
    "supported_tasks",
]

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# Resolving names


def resolve_model(name_or_path: str | os.PathLike[str]) -> str:
    """Map a recipe's ``model:`` value to what ``from_pretrained`` takes.

    An embedded name (:data:`EMBEDDED`) gives its local folder; a tunesmith run directory gives
    its ``best/`` model (so a run can start from, or distil from, an earlier run); an existing
    path gives the path;
    a path-looking string that does not exist (``./x``, ``/x``, ``~/x``, ``a/b/c``) is a
    :class:`ModelError`; anything else is returned unchanged as a hub id.
    """
    name = os.fspath(name_or_path)
    if name in EMBEDDED:
        return EMBEDDED.get(name)()
    path = Path(name).expanduser()
    if (path / "config.yaml").is_file() and (
        (path / "best" / "config.json").is_file() or is_adapter_folder(path / "best")
    ):
        return str(path / "best")
    if path.exists():
        return str(path)
    if looks_like_path(name):
        raise ModelError(
            f"model folder {name!r} does not exist (resolved to {path.resolve()}); use an "
            f"embedded model ({', '.join(EMBEDDED.names())}) or a folder saved with "
            "save_pretrained"
        )
    embedded = embedded_name(name)
    if embedded in EMBEDDED and hub_offline() and not _in_hub_cache(name):
        logger.info("model %r: the hub is offline; using the embedded copy %r", name, embedded)
        return EMBEDDED.get(embedded)()
    return name


def _in_hub_cache(model_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(model_id, "config.json"), str)


def refuse_pickled_weights(resolved: str, name: str) -> None:
    """A model folder whose weights exist only as pickles (``pytorch_model.bin``) is refused with
    a one-line error: tunesmith loads safetensors only. Hub ids are loaded with
    ``use_safetensors=True``, which refuses them the same way."""
    pickles = only_pickle_weights(Path(resolved))
    if pickles:
        raise ModelError(
            f"model {name!r} ({resolved}) has its weights only as a pickle ({pickles[0]}), which "
            "tunesmith never loads (it can run code); convert it to safetensors, e.g. "
            "AutoModel.from_pretrained(folder).save_pretrained(folder, safe_serialization=True) "
            "in a trusted environment"
        )


# the files of an adapter-only folder: tunesmith's own meta, PEFT's config (adapters.io writes
# and reads them; run folders resolve to such a best/, which adapters.loading loads)
ADAPTER_FILES = ("tunesmith_adapter.json", "adapter_config.json")


def is_adapter_folder(path: str | os.PathLike[str]) -> bool:
    """An adapter-only folder (no config.json: the base model is named inside)."""
    path = Path(path)
    return not (path / "config.json").is_file() and any((path / f).is_file() for f in ADAPTER_FILES)


# ---------------------------------------------------------------------------------------------
# Tasks, tokenizers, models


def supported_tasks(config: PretrainedConfig) -> list[str]:
    """The task kinds (:data:`~tunesmith.registry.TASKS`) for which transformers has a head for
    ``config``'s model."""
    return [e.name for e in TASKS if type(config) in e.obj.auto_class._model_mapping]


def load_tokenizer(
    name_or_path: str | os.PathLike[str],
    *,
    revision: str | None = None,
    trust_remote_code: bool = False,
) -> PreTrainedTokenizerBase:
    """Load the tokenizer of a model; pads on the right, with pad = eos (or unk) if unset.
    ``revision`` / ``trust_remote_code``: as for :func:`load_model`."""
    name = os.fspath(name_or_path)
    resolved = resolve_model(name)
    hub = hub_options(name, resolved, revision, trust_remote_code)
    with load_errors(name, resolved):
        tokenizer = AutoTokenizer.from_pretrained(resolved, **hub)
    if tokenizer.pad_token is None:
        fallback = tokenizer.eos_token or tokenizer.unk_token
        if fallback is None:
            logger.warning("tokenizer of %r has no pad, eos or unk token; batches cannot pad", name)
        else:
            tokenizer.pad_token = fallback
    tokenizer.padding_side = "right"
    return tokenizer


def load_model(
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
    revision: str | None = None,
    trust_remote_code: bool = False,
    attn_implementation: str | None = None,
    quantization: str | None = None,
) -> PreTrainedModel:
    """Load ``name_or_path`` with the head for ``task`` (a :mod:`tunesmith.tasks` kind).

    Classification tasks take ``num_labels`` and/or ``id2label``/``label2id``; a head whose label
    count differs from the checkpoint's is re-initialised. ``from_scratch`` builds the same
    architecture from its config with random weights. ``init_seed`` seeds every random init
    (new heads included) without touching the global RNG. ``model.config.name_or_path`` is set to
    ``name_or_path`` as given (e.g. ``"minilm"``), so saved adapters name a resolvable base.
    ``restored`` names modules whose weights the caller loads next (an adapter's saved head):
    they are not reported as randomly initialised.
    An adapter-only folder (an adapter run's ``best/``) is a :class:`ModelError`: the adapters
    layer loads those (``tunesmith.adapters.load_model_or_adapter``).
    ``revision``: a hub id's branch/tag/commit (a local folder is an error); remote code a model
    ships runs only with ``trust_remote_code``; ``attn_implementation`` (default sdpa where
    supported); ``quantization="4bit"``: NF4 through bitsandbytes (CUDA only).
    """
    name = os.fspath(name_or_path)
    auto_cls = task_kind(task).auto_class
    resolved = resolve_model(name)
    if is_adapter_folder(resolved):  # an adapter run's best/: the adapters layer loads those
        raise ModelError(
            f"{resolved} holds an adapter, not a model; load it with "
            "tunesmith.adapters.load_model_or_adapter (its base model, then the adapter)"
        )
    if not from_scratch:
        refuse_pickled_weights(resolved, name)
    hub = hub_options(name, resolved, revision, trust_remote_code)
    config, relabelled = _task_config(name, resolved, task, num_labels, id2label, label2id, hub)
    extra = {**hub, **quantization_options(quantization, name)}
    attention = with_attention(attn_implementation)
    with torch.random.fork_rng(devices=[]):
        if init_seed is not None:
            torch.manual_seed(init_seed)
        if from_scratch:
            model = attention(
                lambda **kw: auto_cls.from_config(
                    config, dtype=dtype, trust_remote_code=trust_remote_code, **kw
                )
            )
            logger.info("built %s for %s from scratch (random init)", type(model).__name__, name)
        else:
            with load_errors(name, resolved), quiet_load_report():
                model, info = attention(
                    lambda **kw: auto_cls.from_pretrained(
                        resolved,
                        config=config,
                        dtype=dtype,
                        ignore_mismatched_sizes=relabelled,
                        output_loading_info=True,
                        use_safetensors=True,
                        **extra,
                        **kw,
                    )
                )
            log_new_weights(model, name, info, restored)
    model.config.name_or_path = name
    restore_pooling(model)
    return model


def restore_pooling(model: PreTrainedModel) -> None:
    """Rebuild the head input a tunesmith run recorded (``config.tunesmith_pooling``: ``cls`` or
    ``mean``, see :mod:`tunesmith.pooling`); plain transformers loading would use the pooler."""
    recorded = getattr(model.config, CONFIG_KEY, None)
    if recorded in ("cls", "mean") and current_pooling(model) is not None:
        apply_pooling(model, recorded)


def _task_config(
    name: str,
    resolved: str,
    task: str,
    num_labels: int | None,
    id2label: dict[int, str] | None,
    label2id: dict[str, int] | None,
    hub: dict[str, Any] | None = None,
) -> tuple[PretrainedConfig, bool]:
    """The checkpoint's config with the task's labels, and whether the head's size changed.
    A :class:`ModelError` when the architecture has no head for ``task``."""
    kind = task_kind(task)
    with load_errors(name, resolved):
        config = AutoConfig.from_pretrained(resolved, **(hub or {}))
    if type(config) not in kind.auto_class._model_mapping:
        supported = ", ".join(supported_tasks(config)) or "none of " + ", ".join(TASKS.names())
        raise ModelError(
            f"model {name!r} has architecture {config.model_type!r} ({type(config).__name__}), "
            f"which has no head for task {task!r}; it supports: {supported} "
            f"(hint: {kind.model_hint})"
        )
    old_labels = config.num_labels
    _apply_labels(config, task, num_labels, id2label, label2id)
    return config, kind.classification and config.num_labels != old_labels


def _apply_labels(
    config: PretrainedConfig,
    task: str,
    num_labels: int | None,
    id2label: dict[int, str] | None,
    label2id: dict[str, int] | None,
) -> None:
    if not task_kind(task).classification:
        if num_labels is not None or id2label is not None or label2id is not None:
            raise ModelError(
                f"num_labels/id2label/label2id apply to classification tasks, not {task!r}"
            )
        return
    if id2label is None and label2id is not None:
        id2label = {int(i): label for label, i in label2id.items()}
    if id2label is not None:
        id2label = {int(i): str(label) for i, label in id2label.items()}
        if sorted(id2label) != list(range(len(id2label))):
            raise ModelError(f"label ids must be 0..n-1, got {sorted(id2label)}")
        if num_labels is not None and num_labels != len(id2label):
            raise ModelError(f"num_labels={num_labels} but id2label has {len(id2label)} labels")
        config.id2label = id2label
        config.label2id = {label: i for i, label in id2label.items()}
    elif num_labels is not None:
        if num_labels < 1:
            raise ModelError(f"num_labels must be >= 1, got {num_labels}")
        config.num_labels = num_labels


def align_pad_token(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> int | None:
    """Copy the tokenizer's pad id into ``model.config`` (and generation config) where unset.

    Causal-LM sequence classification pools the last non-pad token and needs this. Returns the
    model's pad token id afterwards.
    """
    pad_id = tokenizer.pad_token_id
    if model.config.pad_token_id is None and pad_id is not None:
        model.config.pad_token_id = pad_id
    generation = getattr(model, "generation_config", None)
    if generation is not None and generation.pad_token_id is None:
        generation.pad_token_id = model.config.pad_token_id
    return model.config.pad_token_id


# Keys that change on save/reload, across transformers versions or at run time, not the weights
# (``_model_name_or_path`` comes from GGUF metadata; ``problem_type`` is set by the first forward).
_VOLATILE_KEYS = frozenset(
    "_name_or_path _model_name_or_path name_or_path architectures transformers_version dtype "
    "torch_dtype _attn_implementation _attn_implementation_internal attn_implementation "
    "_commit_hash use_cache return_dict output_attentions output_hidden_states pad_token_id "
    "problem_type".split()
)


def _stable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in _VOLATILE_KEYS}
    return value


def model_identity(model: PreTrainedModel) -> dict[str, Any]:
    """What a saved adapter or checkpoint records to check it fits a model later.

    ``config_hash`` is the sha256 of the config JSON without volatile keys (paths, versions,
    dtype, attention backend, pad id, problem type), so it is stable across save/reload.
    """
    config = model.config
    stable = _stable(config.to_diff_dict())
    text = json.dumps(stable, sort_keys=True, default=str)
    return {
        "name_or_path": config.name_or_path,
        "model_type": config.model_type,
        "architecture": type(model).__name__,
        "num_parameters": count_parameters(model)[1],
        "config_hash": hashlib.sha256(text.encode()).hexdigest(),
    }


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts; tied weights count once."""
    trainable = total = 0
    for p in model.parameters():
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return trainable, total
