"""Adapter-only checkpoints: a few megabytes per task instead of a copy of the model.

A saved adapter is a folder with

* ``adapter_model.safetensors``: the adapter's tensors (and the task head's, if included);
* ``tunesmith_adapter.json``: the adapter name, its full config (``type`` + fields), the modules
  it hooks, the head modules saved, the base's hub id (``base_model``; an embedded model's
  :data:`~tunesmith.embedded.HUB_IDS` entry) and the base model's identity
  (:func:`tunesmith.models.model_identity` of the model without its adapters) and weights digest
  (:func:`base_weights_digest`);
* for methods with a PEFT format (LoRA, IA3) also PEFT's ``adapter_config.json``, with tensors under PEFT's key names
  (``base_model.model.<module>.lora_A.weight``; head as ``modules_to_save``), so
  ``peft.PeftModel.from_pretrained(base, folder)`` loads it unchanged.

:func:`load_adapter` reads such a folder -- or a folder written by PEFT (LoRA or IA3) -- onto a
base model, refusing a base whose identity or weights differ from the saved ones.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file
from torch import nn

from tunesmith.adapters.base import state_of
from tunesmith.adapters.methods import adapter_config_from_dict, method_of
from tunesmith.adapters.model import (
    adapter_state_dict,
    add_adapter,
    delete_adapter,
    load_adapter_state_dict,
)
from tunesmith.adapters.peft_format import (
    PEFT_PREFIX,
    base_model_id,
    from_peft_config,
    to_peft_config,
)
from tunesmith.adapters.targets import SLOT, head_modules
from tunesmith.configschema import to_dict
from tunesmith.errors import ModelError, reading
from tunesmith.fingerprint import weights_digest
from tunesmith.models import ADAPTER_FILES, model_identity

__all__ = [
    "META_FILE",
    "PEFT_CONFIG_FILE",
    "WEIGHTS_FILE",
    "adapter_size_bytes",
    "base_identity",
    "base_weights_digest",
    "load_adapter",
    "read_adapter_meta",
    "save_adapter",
]

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "adapter_model.safetensors"
META_FILE, PEFT_CONFIG_FILE = ADAPTER_FILES  # tunesmith_adapter.json, adapter_config.json
FORMAT_VERSION = 1
_COMPARED = ("model_type", "config_hash")  # must match; num_parameters too for the same class


def base_identity(model: nn.Module) -> dict[str, Any]:
    """:func:`~tunesmith.models.model_identity` of ``model`` as if it had no adapters."""
    identity = model_identity(model)
    extra = sum(p.numel() for n, p in model.named_parameters() if f".{SLOT}." in f".{n}")
    identity["num_parameters"] -= extra
    return identity


def base_weights_digest(model: nn.Module) -> str:
    """:func:`~tunesmith.fingerprint.weights_digest` of ``model``'s base weights: every tensor but
    the adapters' (any adapter slot) and the task head's (saved with the adapter, or new)."""
    skip = [f".{SLOT}."] + [f"{h}." for h in head_modules(model)]
    tensors = {f".{k}": v for k, v in model.state_dict().items()}  # so ".adapter_slot." matches
    return weights_digest(tensors, skip=skip)


def _base_dtype(model: nn.Module) -> str:
    return str(next((p.dtype for p in model.parameters()), "none"))


def save_adapter(
    model: nn.Module, directory: str | os.PathLike[str], name: str, include_head: bool = True
) -> Path:
    """Write adapter ``name`` (and the task head, if ``include_head``) to ``directory``."""
    info = state_of(model).get(name)
    peft_format = method_of(info.config).peft is not None
    heads = head_modules(model) if include_head else []
    tensors = adapter_state_dict(model, name, include_head=include_head)
    if peft_format:
        tensors = {PEFT_PREFIX + k: v for k, v in tensors.items()}
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(
        {k: v.detach().cpu().contiguous() for k, v in tensors.items()},
        folder / WEIGHTS_FILE,
        metadata={"format": "pt"},
    )
    meta = {
        "format_version": FORMAT_VERSION,
        "name": name,
        "config": to_dict(info.config),
        "modules": info.modules,
        "head": heads,
        "peft_format": peft_format,
        # ``base.name_or_path`` is what tunesmith loads (an embedded name stays one, so the
        # weights digest below matches offline); ``base_model`` what the hub and PEFT call it
        "base": base_identity(model),
        "base_model": base_model_id(model),
        # the base's weights, not only its config: the same architecture with other weights
        # (a replaced base folder) would give silently wrong predictions
        "base_weights_digest": base_weights_digest(model),
        "base_dtype": _base_dtype(model),
        "base_config": _config_summary(model),
        # the head's labels, so the base can be rebuilt with the same head (load_model)
        "id2label": {str(k): v for k, v in (model.config.id2label or {}).items()}
        if heads
        else None,
    }
    (folder / META_FILE).write_text(json.dumps(meta, indent=2, default=str) + "\n")
    if peft_format:
        peft = to_peft_config(model, info, heads)
        (folder / PEFT_CONFIG_FILE).write_text(json.dumps(peft, indent=2, sort_keys=True) + "\n")
    return folder


def _config_summary(model: nn.Module) -> dict[str, Any]:
    """The base config's JSON-able non-default values, to name what differs on a mismatch."""
    diff = model.config.to_diff_dict()
    return {k: v for k, v in diff.items() if isinstance(v, int | float | str | bool)}


def _check_base(model: nn.Module, meta: dict[str, Any], where: Path) -> None:
    saved, current = meta["base"], base_identity(model)
    keys = list(_COMPARED)
    if saved.get("architecture") == current["architecture"]:
        keys.append("num_parameters")
    differs = [k for k in keys if saved.get(k) != current.get(k)]
    if not differs:
        _check_base_weights(model, meta, where)
        if saved.get("name_or_path") != current.get("name_or_path"):
            logger.info(
                "adapter in %s was saved from %r; loading onto %r (same config)",
                where,
                saved.get("name_or_path"),
                current.get("name_or_path"),
            )
        return
    old, new = meta.get("base_config", {}), _config_summary(model)
    fields = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k) and "name" not in k)

    def describe(i: dict[str, Any]) -> str:
        return (
            f"{i.get('name_or_path')!r} ({i.get('architecture')}, model_type "
            f"{i.get('model_type')}, {i.get('num_parameters', 0):,} parameters)"
        )

    raise ModelError(
        f"the adapter in {where} was saved from base model {describe(saved)}, but it is being "
        f"loaded onto {describe(current)}: {', '.join(differs)} differ"
        + (f" (config fields: {', '.join(fields[:8])})" if fields else "")
        + "; load the base model the adapter was trained on"
    )


def _check_base_weights(model: nn.Module, meta: dict[str, Any], where: Path) -> None:
    """Same config, other weights: a :class:`ModelError` naming both digests. Adapters saved
    before the digest was recorded (or onto a base in another dtype) keep the config check."""
    saved = meta.get("base_weights_digest")
    if saved is None or meta.get("base_dtype") != _base_dtype(model):
        return
    current = base_weights_digest(model)
    if current != saved:
        raise ModelError(
            f"the adapter in {where} was trained on a base model "
            f"{meta['base'].get('name_or_path')!r} whose weights differ from the model it is being "
            f"loaded onto ({model.config.name_or_path!r}): same architecture and config, but "
            f"weights digest {current} instead of {saved}; the predictions would be wrong "
            "(was the base model folder replaced or retrained?); load the base the adapter was "
            "trained on"
        )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read {path}: {exc}") from None


def _read_saved(model: nn.Module, folder: Path) -> tuple[Any, str, list[str], dict]:
    """(config, saved name, extra modules, tensors under name-free keys) of a saved adapter."""
    meta_path, peft_path = folder / META_FILE, folder / PEFT_CONFIG_FILE
    if meta_path.is_file():
        meta = _read_json(meta_path)
        config = adapter_config_from_dict(meta["config"], key=f"{meta_path}: config")
        _check_base(model, meta, folder)
        name = meta["name"]
        extra: list[str] = list(meta.get("head", []))
        strip = bool(meta.get("peft_format"))
    elif peft_path.is_file():
        config, extra = from_peft_config(_read_json(peft_path), str(peft_path))
        name = "default"
        strip = True
    else:
        raise ModelError(f"{folder} holds no adapter: no {META_FILE} or {PEFT_CONFIG_FILE}")
    if not (folder / WEIGHTS_FILE).is_file():
        raise ModelError(f"{folder} has no {WEIGHTS_FILE}")
    with reading(folder / WEIGHTS_FILE, ModelError):
        tensors = load_file(folder / WEIGHTS_FILE)
    if strip:
        tensors = {k.removeprefix(PEFT_PREFIX): v for k, v in tensors.items()}
    return config, name, extra, tensors


def load_adapter_weights(model: nn.Module, directory: str | os.PathLike[str], name: str) -> None:
    """Copy the weights saved in ``directory`` into ``model``'s existing adapter ``name`` (and
    the head, when saved) in place: the modules stay the same objects (a sharded model)."""
    _, _, extra, tensors = _read_saved(model, Path(directory))
    load_adapter_state_dict(model, name, tensors, extra_modules=extra)


def load_adapter(
    model: nn.Module, directory: str | os.PathLike[str], name: str | None = None
) -> str:
    """Add the adapter saved in ``directory`` to ``model`` (active), restoring its weights and,
    when saved, the task head's. ``name`` defaults to the saved name (``"default"`` for a PEFT
    folder). Returns the adapter name. A different base model is a :class:`ModelError`."""
    config, saved_name, extra, tensors = _read_saved(model, Path(directory))
    name = name or saved_name
    add_adapter(model, name, config)
    try:
        load_adapter_state_dict(model, name, tensors, extra_modules=extra)
    except BaseException:
        delete_adapter(model, name)
        raise
    return name


def read_adapter_meta(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """What a saved adapter folder says about itself, without loading a model: ``name``,
    ``config`` (dict with ``type``), ``base`` (identity; ``name_or_path`` is the base to load),
    ``head``. A PEFT folder gives its ``adapter_config.json`` mapped to the same keys."""
    folder = Path(directory)
    if (folder / META_FILE).is_file():
        return _read_json(folder / META_FILE)
    if (folder / PEFT_CONFIG_FILE).is_file():
        peft = _read_json(folder / PEFT_CONFIG_FILE)
        config, heads = from_peft_config(peft, str(folder / PEFT_CONFIG_FILE))
        base = {"name_or_path": peft.get("base_model_name_or_path")}
        return {"name": "default", "config": to_dict(config), "base": base, "head": heads}
    raise ModelError(f"{folder} holds no adapter: no {META_FILE} or {PEFT_CONFIG_FILE}")


def adapter_size_bytes(directory: str | os.PathLike[str]) -> int:
    """Bytes on disk of a saved adapter folder (for reports)."""
    return sum(p.stat().st_size for p in Path(directory).iterdir() if p.is_file())
