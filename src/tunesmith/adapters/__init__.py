"""Adapters: small trainable modules in a frozen pretrained model, one base for many tasks.

Methods, each registering itself by paper name in :data:`ADAPTERS` (``tunesmith list``) with one
:func:`~.methods.register` call in its own module (:mod:`.methods` says what a method declares):

* ``houlsby``, ``pfeiffer``, ``parallel``: bottleneck adapters (:mod:`.bottleneck`);
* ``lora`` (:mod:`.lora`), ``dora`` (:mod:`.dora`), ``ia3`` (:mod:`.ia3`): weight updates that
  merge into the base;
* ``olora``: one LoRA per task, summed, the earlier ones frozen (:mod:`.olora`, O-LoRA's model
  side);
* ``prefix``: prefix tuning for decoder-only models (:mod:`.prefix`);
* ``fusion``: AdapterFusion, attention over trained frozen adapters (:mod:`.fusion`).

Per-task adapters on a multi-head model (one adapter and head per task on one frozen base,
``adapter: {..., per_task: true}`` in a ``task: multi_head`` recipe) are in :mod:`.pertask`.

Importing this package imports every method module below, so the tables are full. Injection is
architecture-agnostic (forward hooks on modules found by name, per-architecture defaults in
:mod:`.targets`); the model-level API is in :mod:`.model`, adapter-only checkpoints (PEFT's format
where a method declares one) in :mod:`.io`, and loading a model source that may be an adapter
folder in :mod:`.loading`.

A recipe's ``adapter:`` section becomes a config with :func:`adapter_config_from_dict`::

    adapter: {type: houlsby, reduction_factor: 16}
    adapter: {type: lora, r: 8, alpha: 16, targets: all-linear}
"""

from __future__ import annotations

# importing a method module registers the method (one register(...) call in each)
from tunesmith.adapters.bottleneck import (
    BottleneckConfig,
    HoulsbyConfig,
    ParallelConfig,
    PfeifferConfig,
)
from tunesmith.adapters.dora import DoraConfig
from tunesmith.adapters.fusion import FusionConfig, fusion_attention
from tunesmith.adapters.ia3 import IA3Config
from tunesmith.adapters.io import (
    adapter_size_bytes,
    base_identity,
    load_adapter,
    load_adapter_weights,
    read_adapter_meta,
    save_adapter,
)
from tunesmith.adapters.loading import load_model_or_adapter
from tunesmith.adapters.lora import LoraConfig
from tunesmith.adapters.methods import (
    ADAPTERS,
    METHODS,
    AdapterMethod,
    PeftMapping,
    adapter_config_from_dict,
    adapter_config_to_dict,
)
from tunesmith.adapters.model import (
    active_adapter,
    adapter_parameters,
    adapter_state_dict,
    add_adapter,
    delete_adapter,
    disable_adapters,
    enable_adapters,
    frozen_parameters,
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
from tunesmith.adapters.olora import OLoraConfig
from tunesmith.adapters.pertask import PerTaskAdapterModel, load_multitask
from tunesmith.adapters.prefix import PrefixConfig
from tunesmith.adapters.targets import TARGETS, ArchTargets

__all__ = [
    "ADAPTERS",
    "METHODS",
    "TARGETS",
    "AdapterMethod",
    "ArchTargets",
    "BottleneckConfig",
    "DoraConfig",
    "FusionConfig",
    "HoulsbyConfig",
    "IA3Config",
    "LoraConfig",
    "OLoraConfig",
    "ParallelConfig",
    "PeftMapping",
    "PerTaskAdapterModel",
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
    "load_adapter_weights",
    "load_adapter_state_dict",
    "load_model_or_adapter",
    "load_multitask",
    "mark_trainable",
    "merge_adapter",
    "merge_and_unload",
    "frozen_parameters",
    "fusion_attention",
    "no_decay_parameters",
    "read_adapter_meta",
    "save_adapter",
    "set_active_adapter",
    "trainable_summary",
    "unmerge_adapter",
]
