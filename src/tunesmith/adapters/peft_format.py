"""PEFT's on-disk format, both directions, for every method that declares a :class:`PeftMapping`.

PEFT (huggingface/peft, ``utils/save_and_load.py``) writes ``adapter_config.json`` (a
``LoraConfig`` / ``IA3Config`` as JSON) and ``adapter_model.safetensors`` whose keys are the
wrapped model's parameter names without the adapter name: ``base_model.model.<module>.lora_A.weight``,
``base_model.model.<module>.ia3_l``; ``modules_to_save`` (the task head) as
``base_model.model.<module>.weight``. Our name-free keys (``model.adapter_state_dict``) are
exactly these without the ``base_model.model.`` prefix, so conversion is a prefix.

This module writes and reads the fields every PEFT config has; each method's own fields, the
options it does not support and its ``peft_type`` come from its registered
:class:`~tunesmith.adapters.methods.PeftMapping`.
"""

from __future__ import annotations

from typing import Any

from torch import nn
from transformers.pytorch_utils import Conv1D

from tunesmith.adapters.base import AdapterInfo
from tunesmith.adapters.methods import METHODS, AdapterMethod, PeftMapping, method_of
from tunesmith.embedded import hub_id
from tunesmith.errors import ModelError

__all__ = [
    "PEFT_PREFIX",
    "base_model_id",
    "from_peft_config",
    "peft_methods",
    "peft_task_type",
    "to_peft_config",
]

PEFT_PREFIX = "base_model.model."

_TASKS = (  # class-name suffix -> PEFT TaskType (selects the PeftModel subclass)
    ("ForSequenceClassification", "SEQ_CLS"),
    ("ForTokenClassification", "TOKEN_CLS"),
    ("ForCausalLM", "CAUSAL_LM"),
    ("LMHeadModel", "CAUSAL_LM"),
    ("ForConditionalGeneration", "SEQ_2_SEQ_LM"),
    ("ForQuestionAnswering", "QUESTION_ANS"),
)


def peft_methods() -> list[AdapterMethod]:
    """The registered methods saved in PEFT's format."""
    return [entry.obj for entry in METHODS if entry.obj.peft is not None]


def peft_task_type(model: nn.Module) -> str | None:
    name = type(model).__name__
    return next((task for suffix, task in _TASKS if name.endswith(suffix)), None)


def base_model_id(model: nn.Module) -> str | None:
    """What PEFT and the model hub call ``model``'s base: the hub id of an embedded model
    (``minilm`` -> ``sentence-transformers/all-MiniLM-L6-v2``), else its ``name_or_path``."""
    name = getattr(model.config, "name_or_path", None) or None
    return (hub_id(name) or name) if name else None


def to_peft_config(model: nn.Module, info: AdapterInfo, heads: list[str]) -> dict[str, Any]:
    """``adapter_config.json`` content for an adapter of a PEFT-format method, in PEFT's format."""
    mapping = method_of(info.config).peft
    if mapping is None:
        raise ModelError(f"adapter {info.name!r} ({info.config.type}) has no PEFT format")
    modules = dict(model.named_modules())
    conv1d = any(isinstance(modules[m], Conv1D) for m in info.modules)
    return {
        "peft_type": mapping.peft_type,
        "task_type": peft_task_type(model),
        "base_model_name_or_path": base_model_id(model),
        "revision": None,
        "inference_mode": True,
        "target_modules": sorted(info.modules),
        "exclude_modules": None,
        "modules_to_save": heads or None,
        "fan_in_fan_out": conv1d,
        "auto_mapping": None,
        **mapping.to_peft(model, info),
        **mapping.unsupported,
        **mapping.selects,
    }


def _mapping_for(data: dict[str, Any], where: str) -> PeftMapping:
    """The mapping of the method that reads ``data``: its ``peft_type``, and among methods
    sharing that type (LoRA, DoRA) the one whose ``selects`` fields match most specifically."""
    peft_type = data.get("peft_type")
    same_type = [m.peft for m in peft_methods() if m.peft.peft_type == peft_type]
    fitting = [p for p in same_type if all(data.get(k) == v for k, v in p.selects.items())]
    if not fitting:
        known = sorted({m.peft.peft_type for m in peft_methods()})
        raise ModelError(
            f"{where}: PEFT adapter type {peft_type!r} cannot be loaded by tunesmith "
            f"(it reads {', '.join(known)})"
        )
    return max(fitting, key=lambda p: len(p.selects))


def _used(value: Any, off: Any) -> bool:
    # PEFT treats None, [] and {} alike as "not set"
    return value != off and not (not value and not off)


def from_peft_config(data: dict[str, Any], where: str) -> tuple[Any, list[str]]:
    """(our config, modules_to_save) from PEFT's ``adapter_config.json``; unsupported PEFT
    features are a :class:`ModelError` naming the field."""
    mapping = _mapping_for(data, where)
    used = [k for k, off in mapping.unsupported.items() if k in data and _used(data[k], off)]
    if used:
        hint = f" ({mapping.supported_hint})" if mapping.supported_hint else ""
        raise ModelError(
            f"{where}: PEFT {mapping.label} option(s) {used} are not supported by tunesmith{hint}"
        )
    config = mapping.from_peft(data)
    config.validate("adapter")
    return config, list(data.get("modules_to_save") or [])
