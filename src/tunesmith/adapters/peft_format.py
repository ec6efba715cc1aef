"""PEFT's on-disk format for LoRA and IA3, both directions.

PEFT (huggingface/peft, ``utils/save_and_load.py``) writes ``adapter_config.json`` (a
``LoraConfig`` / ``IA3Config`` as JSON) and ``adapter_model.safetensors`` whose keys are the
wrapped model's parameter names without the adapter name: ``base_model.model.<module>.lora_A.weight``,
``base_model.model.<module>.ia3_l``; ``modules_to_save`` (the task head) as
``base_model.model.<module>.weight``. Our name-free keys (``model.adapter_state_dict``) are
exactly these without the ``base_model.model.`` prefix, so conversion is a prefix.
"""

from __future__ import annotations

from typing import Any

from torch import nn
from transformers.pytorch_utils import Conv1D

from tunesmith.adapters.base import AdapterInfo
from tunesmith.adapters.ia3 import IA3Config, feedforward_names
from tunesmith.adapters.lora import LoraConfig
from tunesmith.errors import ModelError

__all__ = ["PEFT_PREFIX", "PEFT_TYPES", "from_peft_config", "peft_task_type", "to_peft_config"]

PEFT_PREFIX = "base_model.model."
PEFT_TYPES = {"lora": "LORA", "ia3": "IA3"}

_TASKS = (  # class-name suffix -> PEFT TaskType (selects the PeftModel subclass)
    ("ForSequenceClassification", "SEQ_CLS"),
    ("ForTokenClassification", "TOKEN_CLS"),
    ("ForCausalLM", "CAUSAL_LM"),
    ("LMHeadModel", "CAUSAL_LM"),
    ("ForConditionalGeneration", "SEQ_2_SEQ_LM"),
    ("ForQuestionAnswering", "QUESTION_ANS"),
)

# PEFT LoraConfig fields we do not implement, with the value that means "not used"
_LORA_UNSUPPORTED = {
    "use_dora": False,
    "lora_bias": False,
    "bias": "none",
    "layers_to_transform": None,
    "rank_pattern": {},
    "alpha_pattern": {},
    "exclude_modules": None,
    "target_parameters": None,
    "trainable_token_indices": None,
    "layer_replication": None,
    "use_qalora": False,
    "alora_invocation_tokens": None,
}


def peft_task_type(model: nn.Module) -> str | None:
    name = type(model).__name__
    return next((task for suffix, task in _TASKS if name.endswith(suffix)), None)


def to_peft_config(model: nn.Module, info: AdapterInfo, heads: list[str]) -> dict[str, Any]:
    """``adapter_config.json`` content for a LoRA/IA3 adapter, in PEFT's format."""
    config = info.config
    method = type(config).method
    modules = dict(model.named_modules())
    conv1d = any(isinstance(modules[m], Conv1D) for m in info.modules)
    out: dict[str, Any] = {
        "peft_type": PEFT_TYPES[method],
        "task_type": peft_task_type(model),
        "base_model_name_or_path": getattr(model.config, "name_or_path", None) or None,
        "revision": None,
        "inference_mode": True,
        "target_modules": sorted(info.modules),
        "exclude_modules": None,
        "modules_to_save": heads or None,
        "fan_in_fan_out": conv1d,
        "auto_mapping": None,
    }
    if method == "lora":
        out |= {
            "r": config.r,
            "lora_alpha": config.alpha,
            "lora_dropout": config.dropout,
            "use_rslora": config.use_rslora,
            "init_lora_weights": True,
            "layers_pattern": None,
            **_LORA_UNSUPPORTED,
        }
    else:
        ff = feedforward_names(model, config)
        if isinstance(ff, list):
            ff = sorted(m for m in info.modules if any(m.endswith(f) for f in ff))
        out |= {"feedforward_modules": ff, "init_ia3_weights": True}
    return out


def from_peft_config(data: dict[str, Any], where: str) -> tuple[Any, list[str]]:
    """(our config, modules_to_save) from PEFT's ``adapter_config.json``; unsupported PEFT
    features are a :class:`ModelError` naming the field."""
    peft_type = data.get("peft_type")
    targets = data.get("target_modules")
    heads = list(data.get("modules_to_save") or [])
    if peft_type == "LORA":
        used = [k for k, off in _LORA_UNSUPPORTED.items() if k in data and data[k] != off]
        if used:
            raise ModelError(
                f"{where}: PEFT LoRA option(s) {used} are not supported by tunesmith "
                "(plain LoRA with optional rsLoRA scaling only)"
            )
        config = LoraConfig(
            r=int(data["r"]),
            alpha=float(data.get("lora_alpha", 8)),
            dropout=float(data.get("lora_dropout") or 0.0),
            targets=targets,
            use_rslora=bool(data.get("use_rslora", False)),
        )
    elif peft_type == "IA3":
        if data.get("exclude_modules"):
            raise ModelError(f"{where}: PEFT IA3 exclude_modules is not supported by tunesmith")
        config = IA3Config(targets=targets, feedforward=data.get("feedforward_modules") or [])
    else:
        raise ModelError(
            f"{where}: PEFT adapter type {peft_type!r} cannot be loaded by tunesmith "
            f"(it reads {', '.join(PEFT_TYPES.values())})"
        )
    config.validate("adapter")
    return config, heads
