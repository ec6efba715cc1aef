"""Adapters: small trainable modules in a frozen pretrained model, one base for many tasks.

Methods, registered by paper name in :data:`ADAPTERS` (``tunesmith list``):

* ``houlsby``, ``pfeiffer``, ``parallel``: bottleneck adapters (:mod:`.bottleneck`);
* ``lora`` (:mod:`.lora`), ``ia3`` (:mod:`.ia3`): weight updates that merge into the base;
* ``prefix``: prefix tuning for decoder-only models (:mod:`.prefix`).

Injection is architecture-agnostic (forward hooks on modules found by name, per-architecture
defaults in :mod:`.targets`); the model-level API is in :mod:`.model`, adapter-only checkpoints
(PEFT's format for LoRA/IA3) in :mod:`.io`.

A recipe's ``adapter:`` section becomes a config with :func:`adapter_config_from_dict`::

    adapter: {type: houlsby, reduction_factor: 16}
    adapter: {type: lora, r: 8, alpha: 16, targets: all-linear}
"""

from __future__ import annotations

from typing import Any

from tunesmith.adapters.bottleneck import (
    BottleneckConfig,
    HoulsbyConfig,
    ParallelConfig,
    PfeifferConfig,
)
from tunesmith.adapters.ia3 import IA3Config
from tunesmith.adapters.io import (
    adapter_size_bytes,
    base_identity,
    load_adapter,
    read_adapter_meta,
    save_adapter,
)
from tunesmith.adapters.lora import LoraConfig
from tunesmith.adapters.model import (
    active_adapter,
    adapter_parameters,
    adapter_state_dict,
    add_adapter,
    delete_adapter,
    disable_adapters,
    enable_adapters,
    head_parameters,
    list_adapters,
    load_adapter_state_dict,
    mark_trainable,
    merge_adapter,
    merge_and_unload,
    no_decay_parameters,
    set_active_adapter,
    trainable_summary,
    unmerge_adapter,
)
from tunesmith.adapters.prefix import PrefixConfig
from tunesmith.adapters.targets import TARGETS, ArchTargets
from tunesmith.configschema import build, to_dict
from tunesmith.errors import ConfigError
from tunesmith.registry import Registry

__all__ = [
    "ADAPTERS",
    "TARGETS",
    "ArchTargets",
    "BottleneckConfig",
    "HoulsbyConfig",
    "IA3Config",
    "LoraConfig",
    "ParallelConfig",
    "PfeifferConfig",
    "PrefixConfig",
    "active_adapter",
    "adapter_config_from_dict",
    "adapter_config_to_dict",
    "adapter_parameters",
    "adapter_size_bytes",
    "adapter_state_dict",
    "add_adapter",
    "base_identity",
    "delete_adapter",
    "disable_adapters",
    "enable_adapters",
    "head_parameters",
    "list_adapters",
    "load_adapter",
    "load_adapter_state_dict",
    "mark_trainable",
    "merge_adapter",
    "merge_and_unload",
    "no_decay_parameters",
    "read_adapter_meta",
    "save_adapter",
    "set_active_adapter",
    "trainable_summary",
    "unmerge_adapter",
]

# name -> config dataclass (its defaults are the paper's preset)
ADAPTERS = Registry("adapter method")
ADAPTERS.register(
    "houlsby",
    HoulsbyConfig,
    "bottleneck adapters after attention and feed-forward, inside the residual, layer norms "
    "trained (Houlsby et al. 2019, Parameter-Efficient Transfer Learning for NLP)",
)
ADAPTERS.register(
    "pfeiffer",
    PfeifferConfig,
    "one bottleneck adapter per block, after the feed-forward (Pfeiffer et al. 2021, "
    "AdapterFusion)",
)
ADAPTERS.register(
    "parallel",
    ParallelConfig,
    "scaled bottleneck beside the feed-forward, h = FFN(x) + 4 A(x) (He et al. 2022, Towards a "
    "Unified View of Parameter-Efficient Transfer Learning)",
)
ADAPTERS.register(
    "lora",
    LoraConfig,
    "low-rank update W + (alpha/r) B A on linear layers; merges (Hu et al. 2022, LoRA)",
)
ADAPTERS.register(
    "ia3",
    IA3Config,
    "learned rescaling of keys, values and feed-forward activations; merges (Liu et al. 2022, "
    "Few-Shot Parameter-Efficient Fine-Tuning is Better and Cheaper than In-Context Learning)",
)
ADAPTERS.register(
    "prefix",
    PrefixConfig,
    "learned key/value prefix at every layer of a decoder (Li & Liang 2021, Prefix-Tuning)",
)


def adapter_config_from_dict(data: Any, key: str = "adapter") -> Any:
    """Build and validate the config of a recipe's ``adapter:`` section.

    ``data`` is a mapping with ``type`` (an :data:`ADAPTERS` name) and that method's fields, or
    just the type name (``adapter: lora``). Unknown keys, wrong types and impossible values fail
    with the key path (``adapter.reduction_factor``) and a hint, before any model loads.
    """
    if isinstance(data, str):
        data = {"type": data}
    if not isinstance(data, dict):
        raise ConfigError(key, f"expected a mapping like {{type: houlsby}}, got {data!r}")
    if "type" not in data:
        raise ConfigError(
            f"{key}.type", "required key is missing", f"choose one of {ADAPTERS.names()}"
        )
    cls = ADAPTERS.get(data["type"], f"{key}.type")
    return build(cls, data, key)


def adapter_config_to_dict(config: Any) -> dict[str, Any]:
    """The plain-dict form of a config (``type`` included), e.g. for the resolved recipe."""
    return to_dict(config)
